"""A scriptable ArcFace IR-SE50 whose parameter names match the published `model_ir_se50.pth`.

Source of the architecture: the TreB1eN InsightFace_Pytorch port as carried by StyleCLIP, e4e and
pSp (`models/facial_recognition/model_irse.py` class `Backbone(input_size=112, num_layers=50,
mode="ir_se")`, `helpers.py` classes `bottleneck_IR_SE`, `SEModule`, `Flatten`, functions
`get_blocks`, `l2_norm`); facts in docs/algorithms.md §1.3 and §9. The
parameter list is pinned by shared/fixtures/reference-keys/arcface_ir_se50.json (397 tensors).
This is our own re-implementation, written for `torch.jit.script`, with one exported method:

* `embed(x)`   x [B, 3, 112, 112], an image in [-1, 1] (no other normalisation: ArcFace was
               trained on (x - 0.5) / 0.5) -> L2-normalised features [B, embed_dim]
               (`forward` is the same)
* int attributes `input_size` (112) and `embed_dim`

StyleCLIP's `IDLoss.extract_feats` pools the generator's image to 256 (when it is not 256 already),
crops rows 35:223 and columns 32:220 and pools the 188x188 crop to 112 before the backbone; that
belongs to the caller (the C++ loss does it), not to this module.

Differences in form (not in numbers, in eval mode) from the reference:

* Batch norms always use their running statistics and dropout is absent (the reference's
  `output_layer.1` Dropout(0.6) is an `nn.Identity` here). The reference is only ever used in eval
  mode as a frozen loss network; making that unconditional means a C++ caller that flips the module
  to training mode (or a `train()` on a parent) cannot silently switch to batch statistics.
* The `Flatten` helper is `nn.Flatten()` (same [B, C*H*W] order).

Every width is read from the state dict's shapes (group widths, the SE bottleneck widths, the
embedding size), so the narrow test fixture (widths / 4, 64-wide embedding) and the real model
build from the same code. The depth must be one of the reference's (50, 100 or 152 layers: units
per group (3,4,14,3), (3,13,30,3), (3,8,36,3)); only the `ir_se` mode and 112 px input are
supported, which is what StyleCLIP, e4e and pSp use.
"""

import os
from collections import OrderedDict
from typing import List, Optional

from styleclip_export.atomic import save_script_atomic
from styleclip_export.checkpoint import (describe, first_line, is_torchscript_archive, load_checkpoint,
                                         load_strict)
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# model_irse.py `get_blocks`: units per group for each depth; the first unit of every group has
# stride 2 (112 -> 56 -> 28 -> 14 -> 7).
GROUP_UNITS = {50: [3, 4, 14, 3], 100: [3, 13, 30, 3], 152: [3, 8, 36, 3]}
REFERENCE_WIDTHS = [64, 128, 256, 512]
REFERENCE_EMBED_DIM = 512
INPUT_SIZE = 112
SE_REDUCTION = 16       # helpers.py `bottleneck_IR_SE`: SEModule(depth, 16)

# What the C++ side must do before `embed` (criteria/id_loss.py `extract_feats`).
INPUT_NOTE = "112x112 in [-1,1]; StyleCLIP pools to 256, crops rows 35:223 cols 32:220, pools to 112"

# Keys that every IR-SE backbone state dict has; used to recognise one.
_SIGNATURE_KEYS = ("input_layer.0.weight", "body.0.res_layer.1.weight", "output_layer.3.weight")


# --------------------------------------------------------------------------------------------
# Building blocks (helpers.py, model_irse.py)
# --------------------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics (see the module docstring).

    Same parameters and buffers as nn.BatchNorm2d (weight, bias, running_mean, running_var,
    num_batches_tracked), so the published names load unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class FrozenBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with running statistics only (the embedding's `output_layer.4`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class SEModule(nn.Module):
    """helpers.py `SEModule`: squeeze (global average) -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid,
    then a per-channel rescale of the input. Both convolutions have no bias."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, mid, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(mid, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class BottleneckIRSE(nn.Module):
    """helpers.py `bottleneck_IR_SE`: pre-activation residual unit with squeeze-excitation.

    res_layer: BN(in) -> conv3x3(in->depth, s1) -> PReLU(depth) -> conv3x3(depth->depth, stride)
               -> BN(depth) -> SE      (Sequential indices 0..5 give the published names)
    shortcut:  MaxPool2d(1, stride) when in == depth (a plain subsample, no parameters), else
               conv1x1(stride) -> BN   (`shortcut_layer.0` / `.1`)
    """

    def __init__(self, in_ch: int, depth: int, stride: int, se_mid: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(OrderedDict([
                ("0", nn.Conv2d(in_ch, depth, kernel_size=1, stride=stride, bias=False)),
                ("1", FrozenBatchNorm2d(depth)),
            ]))
        self.res_layer = nn.Sequential(OrderedDict([
            ("0", FrozenBatchNorm2d(in_ch)),
            ("1", nn.Conv2d(in_ch, depth, kernel_size=3, stride=1, padding=1, bias=False)),
            ("2", nn.PReLU(depth)),
            ("3", nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False)),
            ("4", FrozenBatchNorm2d(depth)),
            ("5", SEModule(depth, se_mid)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def default_se_width(depth: int) -> int:
    # The reference uses depth // 16; narrow random models (depth < 16) would get zero channels,
    # so those keep one. Real and fixture checkpoints are read from their shapes instead.
    return max(1, depth // SE_REDUCTION)


class IdentityBackbone(nn.Module):
    """model_irse.py `Backbone(input_size=112, num_layers, mode="ir_se")`, widths as given.

    Submodules are created in the reference's order (input_layer, output_layer, body) so that
    `state_dict()` lists the keys in the same order as the published checkpoint.
    """

    def __init__(self, widths: List[int], units: List[int], embed_dim: int,
                 se_widths: Optional[List[int]] = None, input_size: int = INPUT_SIZE):
        super().__init__()
        if len(widths) != 4 or len(units) != 4:
            raise ValueError(f"need 4 group widths and 4 unit counts, got {widths} / {units}")
        if input_size != INPUT_SIZE:
            raise ValueError(f"only {INPUT_SIZE} px input is supported, got {input_size}")
        n_units = sum(units)
        if se_widths is None:
            se_widths = [default_se_width(w) for w, n in zip(widths, units) for _ in range(n)]
        if len(se_widths) != n_units:
            raise ValueError(f"{len(se_widths)} SE widths for {n_units} units")
        self.input_size = input_size
        self.embed_dim = embed_dim
        # Four stride-2 stages: 112 / 16 = 7.
        spatial = input_size // 16

        self.input_layer = nn.Sequential(OrderedDict([
            ("0", nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)),
            ("1", FrozenBatchNorm2d(widths[0])),
            ("2", nn.PReLU(widths[0])),
        ]))
        self.output_layer = nn.Sequential(OrderedDict([
            ("0", FrozenBatchNorm2d(widths[3])),
            ("1", nn.Identity()),     # the reference's Dropout(0.6): inactive in eval mode
            ("2", nn.Flatten()),
            ("3", nn.Linear(widths[3] * spatial * spatial, embed_dim)),
            ("4", FrozenBatchNorm1d(embed_dim)),
        ]))
        blocks = []
        in_ch = widths[0]
        for depth, n in zip(widths, units):
            for j in range(n):
                stride = 2 if j == 0 else 1
                blocks.append(BottleneckIRSE(in_ch, depth, stride, se_widths[len(blocks)]))
                in_ch = depth
        self.body = nn.Sequential(*blocks)

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size \
                or x.shape[3] != self.input_size:
            raise RuntimeError("embed expects [B, 3, {}, {}], got {}".format(
                self.input_size, self.input_size, x.shape))
        x = self.input_layer(x)
        x = self.body(x)
        x = self.output_layer(x)
        # helpers.py `l2_norm`: x / ||x||_2 without an epsilon, as the reference divides.
        return x / torch.linalg.vector_norm(x, 2, dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


# --------------------------------------------------------------------------------------------
# Reading the configuration
# --------------------------------------------------------------------------------------------

def _shape(sd, key: str) -> List[int]:
    if key not in sd:
        raise ValueError(f"not an ArcFace IR-SE state dict: missing '{key}'")
    return [int(s) for s in sd[key].shape]


def _unit_count(sd) -> int:
    idx = set()
    for k in sd:
        if k.startswith("body."):
            part = k.split(".")[1]
            if not part.isdigit():
                raise ValueError(f"not an ArcFace IR-SE state dict: unexpected key '{k}'")
            idx.add(int(part))
    n = len(idx)
    if n == 0 or idx != set(range(n)):
        raise ValueError(f"not an ArcFace IR-SE state dict: body units are {sorted(idx)[:8]}..., "
                         f"not 0..N-1")
    return n


def identity_config(sd) -> dict:
    """Sizes read from the shapes: group widths, embedding size, depth (from the unit count).

    Group boundaries: unit 0 always starts a group (its shortcut is a parameterless stride-2
    subsample), every other group starts at a unit with a 1x1-conv shortcut (in != depth).
    """
    for key in _SIGNATURE_KEYS:
        _shape(sd, key)
    n_units = _unit_count(sd)
    starts = [0] + [i for i in range(1, n_units) if f"body.{i}.shortcut_layer.0.weight" in sd]
    units = [b - a for a, b in zip(starts, starts[1:] + [n_units])]
    num_layers = next((d for d, u in GROUP_UNITS.items() if u == units), None)
    if num_layers is None:
        raise ValueError(f"IR-SE body has units per group {units}, which is none of the reference "
                         f"depths {dict((d, u) for d, u in GROUP_UNITS.items())}")
    if "body.0.res_layer.5.fc1.weight" not in sd:
        raise ValueError("IR backbone without squeeze-excitation ('ir' mode): only 'ir_se' is supported")
    widths = [_shape(sd, f"body.{s}.res_layer.1.weight")[0] for s in starts]
    stem = _shape(sd, "input_layer.0.weight")
    if stem[1:] != [3, 3, 3] or stem[0] != widths[0]:
        raise ValueError(f"input_layer.0.weight has shape {stem}, expected [{widths[0]}, 3, 3, 3]")
    head = _shape(sd, "output_layer.3.weight")
    spatial = INPUT_SIZE // 16
    if len(head) != 2 or head[1] != widths[3] * spatial * spatial:
        raise ValueError(f"output_layer.3.weight has shape {head}; a {INPUT_SIZE} px backbone of width "
                         f"{widths[3]} needs [E, {widths[3] * spatial * spatial}] (224 px models are "
                         f"not supported)")
    return {
        "input_size": INPUT_SIZE,
        "num_layers": num_layers,
        "mode": "ir_se",
        "widths": widths,
        "embed_dim": head[0],
        "units": units,
    }


def _se_widths(sd, n_units: int) -> List[int]:
    return [_shape(sd, f"body.{i}.res_layer.5.fc1.weight")[0] for i in range(n_units)]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------




def load_identity_state_dict(path) -> "OrderedDict[str, Tensor]":
    """The IR-SE backbone's state dict in fp32 from `model_ir_se50.pth` (a plain state dict),
    a dict holding it under "state_dict", or an identity.pt this exporter wrote.

    Raises ValueError (one line, naming the file) for anything else, e.g. a StyleGAN checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"identity (ArcFace IR-SE50) checkpoint not found: '{path}'")
    name = os.path.basename(path)
    if is_torchscript_archive(path):
        try:
            raw = torch.jit.load(path, map_location="cpu").state_dict()
        except Exception as e:  # archive errors come in many types
            raise ValueError(f"'{name}' is not a PyTorch checkpoint ({type(e).__name__}: "
                             f"{first_line(e)})") from None
    else:
        raw = load_checkpoint(path)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"'{name}' is not an ArcFace IR-SE50 state dict: it holds {describe(raw)}")
    # Weights saved from an nn.DataParallel wrapper carry a "module." prefix on every key.
    if raw and all(isinstance(k, str) and k.startswith("module.") for k in raw):
        raw = OrderedDict((k[len("module."):], v) for k, v in raw.items())
    missing = [k for k in _SIGNATURE_KEYS if k not in raw]
    if missing:
        raise ValueError(f"'{name}' is not an ArcFace IR-SE50 state dict (no '{missing[0]}'); "
                         f"it holds {describe(raw)}")
    sd = OrderedDict()
    for key, value in raw.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"'{name}': entry '{key}' is a {type(value).__name__}, not a tensor")
        if value.is_floating_point():
            sd[key] = value.detach().to(torch.float32, copy=True)
        else:
            sd[key] = value.detach().clone()  # BatchNorm `num_batches_tracked` (int64)
    try:
        identity_config(sd)
    except ValueError as e:
        raise ValueError(f"'{name}': {e}") from None
    return sd



def build_identity(sd) -> nn.Module:
    """Our backbone with `sd` loaded strictly (every key used, none missing), eval, fp32, frozen."""
    cfg = identity_config(sd)
    model = IdentityBackbone(cfg["widths"], cfg["units"], cfg["embed_dim"],
                             _se_widths(sd, sum(cfg["units"])), cfg["input_size"])
    return load_strict(model, sd, "IR-SE backbone")


def script_identity(module: nn.Module) -> torch.jit.ScriptModule:
    """torch.jit.script (a trace would fix the batch size and drop the shape check)."""
    return torch.jit.script(module.eval())


# --------------------------------------------------------------------------------------------
# Random weights (tests, benchmarks)
# --------------------------------------------------------------------------------------------

def random_identity_state_dict(seed=0, width_divisor=8, embed_dim=32) -> "OrderedDict[str, Tensor]":
    """Random weights in the published IR-SE50 layout (names, order, depth), fp32.

    Group widths are 64/128/256/512 divided by `width_divisor` (width_divisor=1, embed_dim=512 is
    the real size). Convolutions and the linear layer are normal with std fan_in^-0.5 so that
    activations stay O(1); batch-norm statistics and affine parameters and PReLU slopes are
    perturbed away from their defaults (1, 0, 0.25) so that a wrong use of any of them shows.
    """
    d = int(width_divisor)
    if d <= 0 or any(w % d for w in REFERENCE_WIDTHS):
        raise ValueError(f"width_divisor must divide 64, got {width_divisor}")
    widths = [w // d for w in REFERENCE_WIDTHS]
    g = torch.Generator().manual_seed(int(seed))

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    # The module gives the names, order and shapes; its own initialisation is replaced below.
    shapes = IdentityBackbone(widths, GROUP_UNITS[50], int(embed_dim)).state_dict()
    out = OrderedDict()
    for key, t in shapes.items():
        shape = tuple(t.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            v = torch.tensor(0, dtype=torch.int64)
        elif leaf == "running_mean":
            v = normal(shape, 0.1)
        elif leaf == "running_var":
            v = 1.0 + torch.rand(shape, generator=g) * 0.5
        elif len(shape) == 1 and _is_prelu(key):
            v = 0.25 + normal(shape, 0.05)
        elif len(shape) == 1 and leaf == "weight":       # batch-norm scale
            v = 1.0 + normal(shape, 0.1)
        elif leaf == "bias":                              # batch-norm shift, linear bias
            v = normal(shape, 0.05)
        else:                                             # convolutions, linear
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            v = normal(shape, fan_in ** -0.5)
        out[key] = v.to(t.dtype).reshape(shape)
    return out


def _is_prelu(key: str) -> bool:
    # PReLU slopes sit at input_layer.2 and body.N.res_layer.2.
    return key == "input_layer.2.weight" or key.endswith(".res_layer.2.weight")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

def export_identity(ckpt_path, out_dir) -> dict:
    """Load -> build -> script -> out_dir/identity.pt, reload and check; returns the manifest section."""
    sd = load_identity_state_dict(ckpt_path)
    cfg = identity_config(sd)
    model = build_identity(sd)
    scripted = script_identity(model)

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "identity.pt")
    save_script_atomic(scripted, path)

    # Reload what was written and compare it with the eager module on a dummy batch of 2.
    reloaded = torch.jit.load(path, map_location="cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=gen) * 2 - 1
    with torch.no_grad():
        got = reloaded.embed(x)
        ref = model.embed(x)
    e = cfg["embed_dim"]
    if tuple(got.shape) != (2, e):
        raise RuntimeError(f"exported identity model gives shape {list(got.shape)}, expected [2, {e}]")
    if not torch.isfinite(got).all():
        raise RuntimeError("exported identity model gives non-finite features on a dummy batch")
    if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"reloaded identity.pt differs from the eager module by "
                           f"{(got - ref).abs().max().item():.3g}")

    return {
        "file": "identity.pt",
        "config": cfg,
        "input": INPUT_NOTE,
        "source": os.path.basename(os.fspath(ckpt_path)),
    }
