"""A scriptable e4e encoder (`Encoder4Editing`) whose parameter names match the published
`e4e_ffhq_encode.pt` (its `encoder.*` entries).

Source of the architecture: omertov/encoder4editing, `models/encoders/psp_encoders.py` class
`Encoder4Editing` and `GradualStyleBlock`, `models/psp.py` (`start_from_latent_avg`); facts in
docs/algorithms.md §4.2. The parameter list is pinned by
shared/fixtures/reference-keys/e4e_encoder4editing.json (621 tensors). Our own re-implementation,
written for `torch.jit.script`, with one exported method:

* `encode(x)`  x [B, 3, S, S], the aligned face in [-1, 1] (e4e's Normalize([0.5]*3, [0.5]*3)),
               S = `input_size` (256 for the published model) -> W+ [B, num_ws, w_dim], with the
               generator's `latent_avg` already added (what psp.py returns with
               `return_latents=True`); `forward` is the same
* int attributes `input_size`, `num_ws`, `w_dim`

The network: the IR-SE50 body of the identity model (identity.py's blocks: same names), feature
taps at the ends of groups 2, 3 and 4 (c1 128 ch at S/4, c2 256 ch at S/8, c3 512 ch at S/16:
body modules 6, 20 and 23 for the published depth), w0 = styles[0](c3) repeated num_ws times,
then deltas: styles[1..2] on c3, styles[3..6] on p2 = up(c3) + latlayer1(c2), styles[7..] on
p1 = up(p2) + latlayer2(c1) (bilinear, align_corners=True). A GradualStyleBlock is log2(spatial)
× [conv3×3 stride 2 + LeakyReLU(0.01)] then an EqualLinear (weight scaled by 1/√in, lr_mul 1).

Widths, unit counts, the number of styles and the style width are read from the state dict, so
the tests' narrow random encoder and the real one build from the same code. In the e4e encoder
the style blocks have no notion of training stage: `progressive_stage` is Inference (every delta
is used), the only mode an exported encoder needs. Batch norms use running statistics always.
"""

import math
import os
from collections import OrderedDict
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleclip_export.atomic import save_script_atomic
from styleclip_export.checkpoint import (describe, first_line, is_torchscript_archive, load_checkpoint,
                                         load_strict)
from styleclip_export.identity import BottleneckIRSE, FrozenBatchNorm2d, REFERENCE_WIDTHS

COARSE_IND = 3   # psp_encoders.py Encoder4Editing: coarse_ind = 3, middle_ind = 7
MIDDLE_IND = 7
REFERENCE_INPUT = 256
_SIGNATURE_KEYS = ("input_layer.0.weight", "body.0.res_layer.1.weight", "styles.0.linear.weight",
                   "latlayer1.weight", "latlayer2.weight")


class GradualStyleBlock(nn.Module):
    """psp_encoders.py `GradualStyleBlock(in_c, out_c, spatial)`: `convs` (Sequential of conv3×3
    stride 2 + LeakyReLU, log2(spatial) times: indices 0, 2, 4, ... hold the convolutions) then
    `linear` (EqualLinear, no activation)."""

    def __init__(self, in_c: int, out_c: int, num_convs: int):
        super().__init__()
        layers: List[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, stride=2, padding=1),
                       nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.out_c = out_c
        # rosinality's EqualLinear with lr_mul 1: weight / sqrt(in), bias as is.
        self.linear = EqualLinear(out_c, out_c)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        return self.linear(x.reshape(-1, self.out_c))


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class Encoder4Editing(nn.Module):
    def __init__(self, widths: List[int], units: List[int], se_widths: List[int],
                 style_convs: List[int], w_dim: int, input_size: int):
        super().__init__()
        self.input_size = input_size
        self.num_ws = len(style_convs)
        self.w_dim = w_dim
        self.input_layer = nn.Sequential(OrderedDict([
            ("0", nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)),
            ("1", FrozenBatchNorm2d(widths[0])),
            ("2", nn.PReLU(widths[0])),
        ]))
        blocks = []
        in_ch = widths[0]
        for depth, n in zip(widths, units):
            for j in range(n):
                blocks.append(BottleneckIRSE(in_ch, depth, 2 if j == 0 else 1, se_widths[len(blocks)]))
                in_ch = depth
        self.body = nn.Sequential(*blocks)
        self.styles = nn.ModuleList([GradualStyleBlock(widths[3], w_dim, n) for n in style_convs])
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], kernel_size=1, stride=1, padding=0)
        # Taps: the last unit of groups 2, 3 and 4 (6, 20, 23 for units 3/4/14/3).
        self.tap1 = units[0] + units[1] - 1
        self.tap2 = self.tap1 + units[2]
        self.tap3 = self.tap2 + units[3]
        self.coarse_ind = COARSE_IND
        self.middle_ind = MIDDLE_IND
        self.register_buffer("latent_avg", torch.zeros(self.num_ws, w_dim))

    @torch.jit.export
    def encode(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size \
                or x.shape[3] != self.input_size:
            raise RuntimeError("encode expects [B, 3, {}, {}], got {}".format(
                self.input_size, self.input_size, x.shape))
        x = self.input_layer(x)
        c1 = x
        c2 = x
        c3 = x
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.tap1:
                c1 = x
            elif i == self.tap2:
                c2 = x
            elif i == self.tap3:
                c3 = x
        w0 = self.styles[0](c3)
        rows: List[Tensor] = []
        features = c3
        p2 = c3
        for i, style in enumerate(self.styles):
            if i == self.coarse_ind:
                p2 = F.interpolate(c3, size=(c2.shape[2], c2.shape[3]), mode="bilinear",
                                   align_corners=True) + self.latlayer1(c2)
                features = p2
            elif i == self.middle_ind:
                features = F.interpolate(p2, size=(c1.shape[2], c1.shape[3]), mode="bilinear",
                                         align_corners=True) + self.latlayer2(c1)
            # Row 0 is w0 itself; every other row is w0 plus its block's delta.
            rows.append(w0 if i == 0 else w0 + style(features))
        w = torch.stack(rows, dim=1)
        return w + self.latent_avg.unsqueeze(0)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)


# --------------------------------------------------------------------------------------------
# Configuration and loading
# --------------------------------------------------------------------------------------------

def _shape(sd, key: str) -> List[int]:
    if key not in sd:
        raise ValueError(f"no '{key}'")
    return list(sd[key].shape)


def encoder_config(sd) -> dict:
    """Widths, unit counts, SE widths, style blocks and the style width, read from the shapes."""
    n_units = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    depths = [_shape(sd, f"body.{i}.res_layer.1.weight")[0] for i in range(n_units)]
    widths, units = [], []
    for d in depths:
        if widths and widths[-1] == d:
            units[-1] += 1
        else:
            widths.append(d)
            units.append(1)
    if len(widths) != 4:
        raise ValueError(f"expected 4 groups of IR-SE units, found widths {widths}")
    n_styles = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("styles."))
    style_convs = [sum(1 for k in sd if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight"))
                   for i in range(n_styles)]
    w_dim = _shape(sd, "styles.0.linear.weight")[0]
    # The coarse blocks reduce c3 (input / 16) to 1×1: the input size follows.
    input_size = 16 * 2 ** style_convs[0]
    for i, n in enumerate(style_convs):
        level = 0 if i < COARSE_IND else (1 if i < MIDDLE_IND else 2)
        if n != style_convs[0] + level:
            raise ValueError(f"styles.{i} has {n} convolutions, expected {style_convs[0] + level} "
                             f"(one more per pyramid level)")
    return {"widths": widths, "units": units, "num_ws": n_styles, "w_dim": w_dim,
            "input_size": input_size, "style_convs": style_convs,
            "se_widths": [_shape(sd, f"body.{i}.res_layer.5.fc1.weight")[0] for i in range(n_units)]}


def load_encoder_checkpoint(path):
    """(state dict of the encoder, latent_avg [num_ws, w_dim] or [w_dim]) from the published
    e4e checkpoint ({"state_dict": {"encoder.*", "decoder.*"}, "latent_avg", "opts"}), a plain
    {"encoder.*"} state dict with "latent_avg", or an encoder.pt this exporter wrote.
    Raises ValueError (one line, naming the file) for anything else."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if is_torchscript_archive(path):
        try:
            m = torch.jit.load(path, map_location="cpu")
            sd = OrderedDict(m.state_dict())
            return sd, sd.pop("latent_avg")
        except Exception as e:  # archive errors come in many types
            raise ValueError(f"'{name}' is not a PyTorch checkpoint ({type(e).__name__}: "
                             f"{first_line(e)})") from None
    raw = load_checkpoint(path)
    if not isinstance(raw, dict):
        raise ValueError(f"'{name}' is not an e4e checkpoint: it holds {describe(raw)}")
    latent_avg = raw.get("latent_avg")
    sd = raw.get("state_dict", raw)
    if not isinstance(sd, dict):
        raise ValueError(f"'{name}' is not an e4e checkpoint: its state_dict holds {describe(sd)}")
    enc = OrderedDict((k[len("encoder."):], v) for k, v in sd.items()
                      if isinstance(k, str) and k.startswith("encoder."))
    missing = [k for k in _SIGNATURE_KEYS if k not in enc]
    if missing:
        raise ValueError(f"'{name}' is not an e4e encoder checkpoint (no 'encoder.{missing[0]}'); "
                         f"it holds {describe(sd)}")
    if not isinstance(latent_avg, torch.Tensor):
        raise ValueError(f"'{name}' has no latent_avg (e4e adds it to every code: "
                         f"start_from_latent_avg)")
    out = OrderedDict()
    for k, v in enc.items():
        out[k] = v.detach().to(torch.float32, copy=True) if v.is_floating_point() else v.detach().clone()
    return out, latent_avg.detach().to(torch.float32)


def build_encoder(sd, latent_avg) -> nn.Module:
    cfg = encoder_config(sd)
    model = Encoder4Editing(cfg["widths"], cfg["units"], cfg["se_widths"], cfg["style_convs"],
                            cfg["w_dim"], cfg["input_size"])
    la = latent_avg.reshape(-1, cfg["w_dim"]) if latent_avg.numel() % cfg["w_dim"] == 0 else None
    if la is None or la.shape[0] not in (1, cfg["num_ws"]):
        raise ValueError(f"latent_avg has shape {list(latent_avg.shape)}; expected [{cfg['w_dim']}] "
                         f"or [{cfg['num_ws']}, {cfg['w_dim']}]")
    full = OrderedDict(sd)
    full["latent_avg"] = la.expand(cfg["num_ws"], cfg["w_dim"]).clone()
    return load_strict(model, full, "e4e encoder").eval()


def random_encoder_checkpoint(num_ws: int, w_dim: int, seed: int = 0, width_divisor: int = 8,
                              units=(1, 1, 1, 1), input_size: int = 64) -> dict:
    """Random weights in the published checkpoint's layout ({"state_dict": {"encoder.*"},
    "latent_avg"}) for tests: narrow widths (64/128/256/512 divided by `width_divisor`), few
    units, a small input; everything else (names, the style blocks' pyramid) as published."""
    d = int(width_divisor)
    widths = [w // d for w in REFERENCE_WIDTHS]
    base = int(round(math.log2(input_size // 16)))
    style_convs = [base + (0 if i < COARSE_IND else (1 if i < MIDDLE_IND else 2)) for i in range(num_ws)]
    se = [max(1, w // 16) for w, n in zip(widths, units) for _ in range(n)]
    model = Encoder4Editing(widths, list(units), se, style_convs, w_dim, input_size)
    g = torch.Generator().manual_seed(int(seed))
    sd = OrderedDict()
    for key, t in model.state_dict().items():
        if key == "latent_avg":
            continue
        leaf = key.rsplit(".", 1)[-1]
        shape = tuple(t.shape)
        if leaf == "num_batches_tracked":
            v = torch.tensor(0, dtype=torch.int64)
        elif leaf == "running_mean":
            v = torch.randn(shape, generator=g) * 0.1
        elif leaf == "running_var":
            v = 1.0 + torch.rand(shape, generator=g) * 0.5
        elif len(shape) == 1 and leaf == "weight":
            v = (0.25 if key.endswith(".2.weight") and "res_layer" in key or key == "input_layer.2.weight"
                 else 1.0) + torch.randn(shape, generator=g) * 0.05
        elif leaf == "bias":
            v = torch.randn(shape, generator=g) * 0.05
        elif key.endswith("linear.weight"):
            v = torch.randn(shape, generator=g)   # EqualLinear scales by 1/sqrt(in) itself
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            v = torch.randn(shape, generator=g) * fan_in ** -0.5
        sd["encoder." + key] = v.to(t.dtype)
    return {"state_dict": sd, "latent_avg": torch.randn(num_ws, w_dim, generator=g) * 0.1}


def export_encoder(ckpt_path, out_dir, num_ws=None, w_dim=None) -> dict:
    """Load -> build -> script -> out_dir/encoder.pt, reload and check; returns the manifest
    section. `num_ws` / `w_dim`: the bundle generator's, which the encoder must match."""
    sd, latent_avg = load_encoder_checkpoint(ckpt_path)
    try:
        cfg = encoder_config(sd)
    except ValueError as e:
        raise ValueError(f"'{os.path.basename(os.fspath(ckpt_path))}': {e}") from None
    if num_ws is not None and (cfg["num_ws"], cfg["w_dim"]) != (num_ws, w_dim):
        raise ValueError(f"the encoder gives W+ [{cfg['num_ws']}, {cfg['w_dim']}] but the bundle's "
                         f"generator takes [{num_ws}, {w_dim}]: export the encoder trained for it")
    model = build_encoder(sd, latent_avg)
    scripted = torch.jit.script(model)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "encoder.pt")
    save_script_atomic(scripted, path)
    reloaded = torch.jit.load(path, map_location="cpu")
    x = torch.rand(2, 3, cfg["input_size"], cfg["input_size"], generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        got, ref = reloaded.encode(x), model.encode(x)
    if tuple(got.shape) != (2, cfg["num_ws"], cfg["w_dim"]) or not torch.isfinite(got).all():
        raise RuntimeError(f"exported encoder gives {list(got.shape)} (finite: {bool(torch.isfinite(got).all())})")
    if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"reloaded encoder.pt differs from the eager module by {(got - ref).abs().max().item():.3g}")
    return {"file": "encoder.pt", "kind": "e4e",
            "config": {k: cfg[k] for k in ("widths", "units", "num_ws", "w_dim", "input_size")},
            "input": f"aligned face resized to {cfg['input_size']}x{cfg['input_size']}, in [-1,1]",
            "source": os.path.basename(os.fspath(ckpt_path))}
