"""A scriptable CLIP whose parameter names match OpenAI's state dicts, and its exporter.

Source of the architecture: openai/CLIP `clip/model.py` (classes `CLIP`, `VisionTransformer`,
`ModifiedResNet`, `Bottleneck`, `AttentionPool2d`, `Transformer`, `ResidualAttentionBlock`,
`LayerNorm`, `QuickGELU`; function `build_model`). This is our own re-implementation, written
for `torch.jit.script` from the start, with these exported methods:

* `encode_image(image)`   image [B, 3, R, R], already normalised with CLIP's mean/std
                          -> unnormalised embedding [B, embed_dim]
* `encode_text(tokens)`   tokens [B, L] int64 or int32, L <= context_length (normally equal)
                          -> unnormalised embedding [B, embed_dim]
* `forward(image, tokens)` -> (logits_per_image, logits_per_text), as OpenAI's `CLIP.forward`
* parameter `logit_scale` (the raw log value, as stored in the checkpoint)
* int attributes `embed_dim`, `image_resolution`, `context_length`, `vocab_size`

Differences in form (not in numbers) from the reference:

* Attention is written out by hand instead of using `nn.MultiheadAttention`, keeping the same
  parameter names (`attn.in_proj_weight`, `attn.in_proj_bias`, `attn.out_proj.*`). Reason: the
  scripted archive then holds a few plain tensor ops instead of PyTorch's whole
  `multi_head_attention_forward` (whose code and fast paths change between releases), and tensors
  stay batch-first (no NLD <-> LND permutes).
* The causal mask is built per call on the input's device (OpenAI keeps a fixed
  [context_length]^2 CPU tensor in `build_attention_mask` and moves it in every block).
* The anti-aliasing `AvgPool2d` of a ResNet bottleneck's downsample branch (OpenAI's Sequential
  entry "-1", which has no parameters) is applied outside the `downsample` Sequential, so the
  parameter names `downsample.0.*` / `downsample.1.*` are unchanged.

Every size is read from the state dict as OpenAI's `build_model` does, with one exception that
the weights cannot tell: the number of attention heads. OpenAI fixes it as width // 64 (vision,
text); all published checkpoints follow that rule. Models built directly with OpenAI's `CLIP(...)`
class may use another text head count (the test fixture: width 32, 2 heads), so the text head
count can be given explicitly (`transformer_heads=`).
"""

import math
import os
from collections import OrderedDict
from typing import List, Optional, Tuple

from styleclip_export.atomic import save_script_atomic
from styleclip_export.checkpoint import describe, is_torchscript_archive, load_checkpoint, load_strict
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# clip/clip.py `_transform`: Normalize((0.48145466, 0.4578275, 0.40821073),
#                                     (0.26862954, 0.26130258, 0.27577711))
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# Non-weight entries of OpenAI's distributed TorchScript archives; `build_model` deletes them.
_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")

# Keys every CLIP state dict has (text tower), and the one key of each vision tower
# (`build_model`: vit = "visual.proj" in state_dict; ResNet has `visual.attnpool.*`).
_TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection",
              "logit_scale")
_VIT_KEY = "visual.proj"
_RESNET_KEY = "visual.attnpool.positional_embedding"


# --------------------------------------------------------------------------------------------
# Building blocks (clip/model.py)
# --------------------------------------------------------------------------------------------

class LayerNorm(nn.LayerNorm):
    """clip/model.py `LayerNorm`: always normalises in fp32 (matters once weights are half)."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                         self.eps)
        return y.to(dtype)


class QuickGELU(nn.Module):
    """clip/model.py `QuickGELU`: x * sigmoid(1.702 x) (CLIP was trained with this, not erf GELU)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter layout.

    `in_proj_weight` [3D, D] stacks the q, k, v projections (in that order) and `out_proj` is a
    Linear, as in torch.nn.MultiheadAttention, which clip/model.py `ResidualAttentionBlock.attn`
    uses. Tensors here are batch-first [B, L, D]. The query is divided by sqrt(head_dim) before
    the product, as `F.multi_head_attention_forward` does.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if heads <= 0 or width % heads != 0:
            raise ValueError(f"attention width {width} is not divisible into {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.scale = math.sqrt(float(self.head_dim))
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        b, n, d = x.shape[0], x.shape[1], x.shape[2]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)
        # [B, L, D] -> [B, heads, L, head_dim]
        q = q.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) / self.scale
        k = k.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """clip/model.py `ResidualAttentionBlock`: pre-LN, x + attn(ln_1(x)), x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        # Names `mlp.c_fc` / `mlp.c_proj` as in the reference's OrderedDict Sequential.
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    """clip/model.py `Transformer`: `resblocks.N` (a ModuleList gives the same names as the
    reference's Sequential, and lets the mask be passed along)."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    """clip/model.py `VisionTransformer`: patch conv (no bias), class token, positional
    embedding, ln_pre, transformer, ln_post on the class token, projection `proj`."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        grid = input_resolution // patch_size
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, output_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)                              # [B, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)               # [B, grid^2, width]
        cls = self.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[2])
        x = torch.cat([cls, x], dim=1)                 # class token first
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x, None)                  # vision tokens attend to all tokens
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj


class Bottleneck(nn.Module):
    """clip/model.py `Bottleneck` (expansion 4): all convs stride 1; when stride > 1 an
    AvgPool2d(stride) follows conv2 and precedes the downsample branch's 1x1 conv."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.has_downsample = stride > 1 or inplanes != planes * 4
        if self.has_downsample:
            # Reference names: downsample."-1" AvgPool (no parameters), ."0" conv, ."1" BN.
            self.downsample = nn.Sequential(OrderedDict([
                ("0", nn.Conv2d(inplanes, planes * 4, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4)),
            ]))
        else:
            self.downsample = nn.Sequential()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        if self.stride > 1:
            out = F.avg_pool2d(out, self.stride)
        out = self.bn3(self.conv3(out))
        identity = x
        if self.has_downsample:
            if self.stride > 1:
                identity = F.avg_pool2d(identity, self.stride)
            identity = self.downsample(identity)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """clip/model.py `AttentionPool2d`: the mean token (prepended to the HW tokens) queries all
    HW+1 tokens with separate q/k/v projections; `c_proj` is the output projection."""

    def __init__(self, spatial_dim: int, width: int, heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(spatial_dim ** 2 + 1, width))
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)
        if heads <= 0 or width % heads != 0:
            raise ValueError(f"attention-pool width {width} is not divisible into {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.scale = math.sqrt(float(self.head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[0], x.shape[1]
        x = x.flatten(2).transpose(1, 2)                                   # [B, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)             # [B, HW+1, C]
        x = x + self.positional_embedding.to(x.dtype)
        n = x.shape[1]
        q = self.q_proj(x[:, :1]).reshape(b, 1, self.heads, self.head_dim).transpose(1, 2) / self.scale
        k = self.k_proj(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, c)
        return self.c_proj(out)


class ModifiedResNet(nn.Module):
    """clip/model.py `ModifiedResNet`: 3-conv stem + AvgPool2d(2), four bottleneck stages
    (widths w, 2w, 4w, 8w; stride 2 from stage 2), attention pooling over width*32 features."""

    def __init__(self, layers: List[int], output_dim: int, heads: int, input_resolution: int, width: int):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * (2 ** i)
            stride = 1 if i == 0 else 2
            seq = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * 4
            for _ in range(1, blocks):
                seq.append(Bottleneck(inplanes, planes, 1))
            stages.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.avg_pool2d(x, 2)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.attnpool(x)


class CLIP(nn.Module):
    """clip/model.py `CLIP`: a vision tower `visual` and the text tower at the top level."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.embed_dim = int(cfg["embed_dim"])
        self.image_resolution = int(cfg["image_resolution"])
        self.context_length = int(cfg["context_length"])
        self.vocab_size = int(cfg["vocab_size"])
        if cfg["vision_kind"] == "resnet":
            self.visual = ModifiedResNet(list(cfg["vision_layers"]), self.embed_dim, cfg["vision_heads"],
                                         self.image_resolution, cfg["vision_width"])
        else:
            self.visual = VisionTransformer(self.image_resolution, cfg["vision_patch_size"],
                                            cfg["vision_width"], cfg["vision_layers"], cfg["vision_heads"],
                                            self.embed_dim)
        width = int(cfg["transformer_width"])
        self.transformer = Transformer(width, cfg["transformer_layers"], cfg["transformer_heads"])
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, self.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    @torch.jit.export
    def encode_image(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] != self.image_resolution \
                or image.shape[3] != self.image_resolution:
            raise RuntimeError("encode_image expects [B, 3, {}, {}], got {}".format(
                self.image_resolution, self.image_resolution, image.shape))
        return self.visual(image.to(self.text_projection.dtype))

    @torch.jit.export
    def encode_text(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise RuntimeError("encode_text expects [B, L] token ids with L <= {}, got {}".format(
                self.context_length, tokens.shape))
        tokens = tokens.to(torch.int64)  # int32 from C++ callers; embedding/argmax want int64
        n = tokens.shape[1]
        x = self.token_embedding(tokens).to(self.text_projection.dtype)
        # A shorter L is the same as the first L positions of a padded sequence: the mask is
        # causal, so no position sees the padding after it.
        x = x + self.positional_embedding[:n].to(x.dtype)
        # build_attention_mask: additive, -inf strictly above the diagonal.
        mask = torch.full([n, n], float("-inf"), dtype=x.dtype, device=x.device).triu(1)
        x = self.transformer(x, mask)
        x = self.ln_final(x)
        # Pool at the end-of-text token, which has the largest id in each sequence.
        rows = torch.arange(x.shape[0], device=x.device)
        x = x[rows, tokens.argmax(dim=-1)]
        return x @ self.text_projection

    def forward(self, image: Tensor, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        # CLIP.forward: cosine similarity scaled by exp(logit_scale).
        img = self.encode_image(image)
        txt = self.encode_text(tokens)
        img = img / torch.linalg.vector_norm(img, dim=1, keepdim=True)
        txt = txt / torch.linalg.vector_norm(txt, dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * torch.matmul(img, txt.t())
        return logits_per_image, logits_per_image.t()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------



def _load_with_info(path) -> Tuple["OrderedDict[str, Tensor]", str, str]:
    """(fp32 state dict, source_kind, source_dtype)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP checkpoint not found: '{path}'")
    name = os.path.basename(path)
    if is_torchscript_archive(path):
        kind = "torchscript"
        try:
            # OpenAI's distributed form (clip/clip.py `load`: torch.jit.load, then
            # build_model(model.state_dict()) when jit=False).
            raw = torch.jit.load(path, map_location="cpu").state_dict()
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"'{name}': TorchScript archive could not be loaded ({first})") from None
    else:
        kind = "state_dict"
        raw = load_checkpoint(path)
        if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
            raw = raw["state_dict"]

    if not isinstance(raw, dict):
        raise ValueError(f"'{name}' is not a CLIP checkpoint: it holds {describe(raw)}")
    missing = [k for k in _TEXT_KEYS if k not in raw]
    if missing or (_VIT_KEY not in raw and _RESNET_KEY not in raw):
        raise ValueError(f"'{name}' is not a CLIP checkpoint (no '{(missing or [_VIT_KEY])[0]}'); "
                         f"it holds {describe(raw)}")

    sd = OrderedDict()
    dtypes = set()
    for key, value in raw.items():
        if key in _METADATA_KEYS:
            continue
        if not isinstance(value, Tensor):
            raise ValueError(f"'{name}': entry '{key}' is a {type(value).__name__}, not a tensor")
        if value.is_floating_point():
            dtypes.add(value.dtype)
            sd[key] = value.detach().to(torch.float32, copy=True)
        else:
            sd[key] = value.detach().clone()  # e.g. BatchNorm `num_batches_tracked` (int64)
    if torch.float16 in dtypes:
        src_dtype = "float16"
    elif torch.bfloat16 in dtypes:
        src_dtype = "bfloat16"
    else:
        src_dtype = "float32"
    return sd, kind, src_dtype


def load_clip_state_dict(path) -> "OrderedDict[str, Tensor]":
    """OpenAI-layout CLIP state dict in fp32 from a TorchScript archive (OpenAI's distributed
    form) or a torch.save'd state dict (optionally under "state_dict"); fp16 or fp32.

    Raises ValueError (one line, naming the file) for anything else.
    """
    return _load_with_info(path)[0]


def _without_metadata(sd) -> "OrderedDict[str, Tensor]":
    return OrderedDict((k, v) for k, v in sd.items() if k not in _METADATA_KEYS)


def _heads(width: int, what: str) -> int:
    # build_model / CLIP.__init__: heads = width // 64 (head dimension 64).
    heads = width // 64
    if heads == 0 or width % heads != 0:
        raise ValueError(f"{what} width {width} does not follow OpenAI's heads = width // 64 rule; "
                         f"pass the head count explicitly")
    return heads


def clip_config(sd, transformer_heads: Optional[int] = None) -> dict:
    """Every size, read from the state dict's shapes as clip/model.py `build_model` does.

    `transformer_heads` overrides the text head count (weights do not determine it; OpenAI
    uses width // 64, which is the default).
    """
    vit = _VIT_KEY in sd
    if not vit and _RESNET_KEY not in sd:
        raise ValueError("not a CLIP state dict: neither 'visual.proj' (ViT) nor "
                         "'visual.attnpool.positional_embedding' (ResNet)")
    missing = [k for k in _TEXT_KEYS if k not in sd]
    if missing:
        raise ValueError(f"not a CLIP state dict: missing {missing}")
    if vit:
        conv = sd["visual.conv1.weight"]
        vision_width = int(conv.shape[0])
        vision_patch_size = int(conv.shape[-1])
        vision_layers = len([k for k in sd if k.startswith("visual.transformer.resblocks.")
                             and k.endswith(".attn.in_proj_weight")])
        n_pos = int(sd["visual.positional_embedding"].shape[0])
        grid = round((n_pos - 1) ** 0.5)
        if grid * grid + 1 != n_pos:
            raise ValueError(f"visual.positional_embedding has {n_pos} rows, not grid^2 + 1")
        image_resolution = vision_patch_size * grid
        vision_heads = _heads(vision_width, "vision transformer")
        vision_kind = "vit"
    else:
        # ResNet: block counts per stage from the `visual.layerN.<i>.` key indices.
        vision_layers = [len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{b}.")})
                         for b in (1, 2, 3, 4)]
        vision_width = int(sd["visual.layer1.0.conv1.weight"].shape[0])
        n_pos = int(sd[_RESNET_KEY].shape[0])
        out_w = round((n_pos - 1) ** 0.5)
        if out_w * out_w + 1 != n_pos:
            raise ValueError(f"visual.attnpool.positional_embedding has {n_pos} rows, not grid^2 + 1")
        image_resolution = out_w * 32
        vision_patch_size = None
        vision_heads = vision_width * 32 // 64  # CLIP.__init__ for ModifiedResNet
        vision_kind = "resnet"

    transformer_width = int(sd["ln_final.weight"].shape[0])
    if transformer_heads is None:
        transformer_heads = _heads(transformer_width, "text transformer")
    elif transformer_heads <= 0 or transformer_width % transformer_heads != 0:
        raise ValueError(f"text width {transformer_width} is not divisible into {transformer_heads} heads")
    transformer_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    return {
        "embed_dim": int(sd["text_projection"].shape[1]),
        "image_resolution": int(image_resolution),
        "vision_kind": vision_kind,
        "vision_layers": vision_layers,
        "vision_width": vision_width,
        "vision_patch_size": vision_patch_size,
        "vision_heads": int(vision_heads),
        "context_length": int(sd["positional_embedding"].shape[0]),
        "vocab_size": int(sd["token_embedding.weight"].shape[0]),
        "transformer_width": transformer_width,
        "transformer_heads": int(transformer_heads),
        "transformer_layers": transformer_layers,
    }



def build_clip(sd, transformer_heads: Optional[int] = None) -> nn.Module:
    """Our CLIP module with `sd` loaded strictly (every key used, none missing), eval, fp32."""
    sd = _without_metadata(sd)
    cfg = clip_config(sd, transformer_heads)
    model = CLIP(cfg)
    return load_strict(model, sd, "CLIP architecture")


def script_clip(module: nn.Module) -> torch.jit.ScriptModule:
    """torch.jit.script (not trace: the exported methods and the free batch size need script)."""
    return torch.jit.script(module.eval())


# --------------------------------------------------------------------------------------------
# Random weights (tests, benchmarks)
# --------------------------------------------------------------------------------------------

def random_clip_state_dict(seed=0, embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64,
                           vision_patch_size=8, context_length=77, vocab_size=49408, transformer_width=32,
                           transformer_heads=2, transformer_layers=2) -> "OrderedDict[str, Tensor]":
    """A random-weight CLIP state dict in OpenAI's layout, fp32, at any size.

    `vision_layers` an int gives a ViT; a 4-sequence gives a ModifiedResNet (as OpenAI's
    `CLIP(...)` decides; `vision_patch_size` is then unused and `image_resolution` must be a
    multiple of 32). Initialisation follows clip/model.py `initialize_parameters` (token
    embedding std 0.02, positional std 0.01, attn std width^-0.5, proj std
    width^-0.5 (2 layers)^-0.5, fc std (2 width)^-0.5, projections width^-0.5; ViT embeddings
    scaled by width^-0.5), and every LayerNorm, BatchNorm and bias is perturbed away from its
    init so that none is trivially 1 or 0. Note `transformer_heads` is not recorded in the
    weights: pass it to `build_clip` / `export_clip` unless it equals transformer_width // 64.
    """
    g = torch.Generator().manual_seed(int(seed))

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    resnet = isinstance(vision_layers, (list, tuple))
    cfg = {
        "embed_dim": embed_dim, "image_resolution": image_resolution,
        "vision_kind": "resnet" if resnet else "vit",
        "vision_layers": list(vision_layers) if resnet else int(vision_layers),
        "vision_width": vision_width, "vision_patch_size": None if resnet else vision_patch_size,
        "vision_heads": vision_width * 32 // 64 if resnet else vision_width // 64,
        "context_length": context_length, "vocab_size": vocab_size,
        "transformer_width": transformer_width, "transformer_heads": transformer_heads,
        "transformer_layers": transformer_layers,
    }
    if not resnet and vision_width < 64:
        raise ValueError("vision_width must be at least 64 (OpenAI: vision heads = width // 64)")
    if resnet and image_resolution % 32 != 0:
        raise ValueError("a ResNet CLIP needs image_resolution divisible by 32")
    if not resnet and image_resolution % vision_patch_size != 0:
        raise ValueError("image_resolution must be a multiple of vision_patch_size")
    model = CLIP(cfg)
    sd = model.state_dict()
    out = OrderedDict()
    for key, t in sd.items():
        shape = tuple(t.shape)
        leaf = key.rsplit(".", 1)[-1]
        if key == "token_embedding.weight":
            v = normal(shape, 0.02)
        elif key == "positional_embedding":
            v = normal(shape, 0.01)
        elif key == "logit_scale":
            v = torch.tensor(math.log(1 / 0.07)) + normal(shape, 0.1)
        elif key == "text_projection":
            v = normal(shape, transformer_width ** -0.5)
        elif key in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
            v = normal(shape, vision_width ** -0.5)
        elif key.endswith("num_batches_tracked"):
            v = torch.tensor(0, dtype=torch.int64)
        elif key.endswith("running_mean"):
            v = normal(shape, 0.1)
        elif key.endswith("running_var"):
            v = 1.0 + torch.rand(shape, generator=g) * 0.5
        elif ".ln_" in key or key.startswith("ln_") or ".bn" in key or key.startswith("visual.bn") \
                or key.endswith("downsample.1.weight") or key.endswith("downsample.1.bias"):
            v = (1.0 + normal(shape, 0.1)) if leaf == "weight" else normal(shape, 0.05)
        elif leaf in ("bias", "in_proj_bias"):
            v = normal(shape, 0.02)
        else:
            # Weight matrices and convolutions.
            if key.startswith("visual."):
                width, layers = vision_width, (1 if resnet else int(vision_layers))
            else:
                width, layers = transformer_width, transformer_layers
            if key.endswith("attn.in_proj_weight"):
                std = width ** -0.5
            elif key.endswith("attn.out_proj.weight") or key.endswith("mlp.c_proj.weight"):
                std = (width ** -0.5) * ((2 * layers) ** -0.5)
            elif key.endswith("mlp.c_fc.weight"):
                std = (2 * width) ** -0.5
            elif key.startswith("visual.attnpool."):
                std = shape[1] ** -0.5  # attnpool.c_proj.in_features ** -0.5
            else:
                fan_in = 1
                for s in shape[1:]:
                    fan_in *= s
                std = fan_in ** -0.5  # convolutions: keep activations O(1)
            v = normal(shape, std)
        out[key] = v.to(t.dtype).reshape(shape)
    return out


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

def _dummy_tokens(batch: int, context_length: int, vocab_size: int) -> Tensor:
    """Start token, a few words, end token (the largest id, as in CLIP's BPE), zero padding."""
    t = torch.zeros(batch, context_length, dtype=torch.int64)
    for i in range(batch):
        n = min(context_length - 2, 3 + i)
        t[i, 0] = vocab_size - 2
        t[i, 1:1 + n] = torch.arange(1, 1 + n) % max(1, vocab_size - 2)
        t[i, 1 + n] = vocab_size - 1
    return t


def export_clip(ckpt_path, out_dir, transformer_heads: Optional[int] = None) -> dict:
    """Load -> build -> script -> out_dir/clip.pt, reload and check; returns the manifest section."""
    sd, kind, src_dtype = _load_with_info(ckpt_path)
    cfg = clip_config(sd, transformer_heads)
    model = build_clip(sd, cfg["transformer_heads"])
    scripted = script_clip(model)

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "clip.pt")
    save_script_atomic(scripted, path)

    # Reload what was written and compare it with the eager module on a dummy batch of 2.
    reloaded = torch.jit.load(path, map_location="cpu")
    r = cfg["image_resolution"]
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, r, r, generator=gen)
    tokens = _dummy_tokens(2, cfg["context_length"], cfg["vocab_size"])
    with torch.no_grad():
        img = reloaded.encode_image(image)
        txt = reloaded.encode_text(tokens)
        txt32 = reloaded.encode_text(tokens.to(torch.int32))
        ref_img = model.encode_image(image)
        ref_txt = model.encode_text(tokens)
    e = cfg["embed_dim"]
    if tuple(img.shape) != (2, e) or tuple(txt.shape) != (2, e):
        raise RuntimeError(f"exported CLIP gives shapes {list(img.shape)} / {list(txt.shape)}, "
                           f"expected [2, {e}]")
    if not (torch.isfinite(img).all() and torch.isfinite(txt).all()):
        raise RuntimeError("exported CLIP gives non-finite embeddings on a dummy batch")
    for what, a, b in (("encode_image", img, ref_img), ("encode_text", txt, ref_txt),
                       ("encode_text(int32)", txt32, ref_txt)):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"reloaded clip.pt {what} differs from the eager module by "
                               f"{(a - b).abs().max().item():.3g}")

    return {
        "file": "clip.pt",
        "config": cfg,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "source": os.path.basename(os.fspath(ckpt_path)),
        "source_kind": kind,
        "source_dtype": src_dtype,
    }
