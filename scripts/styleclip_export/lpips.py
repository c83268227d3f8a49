"""A scriptable LPIPS-VGG (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", version 0.1) for the photo projector's perceptual loss.

Sources of the facts (richzhang/PerceptualSimilarity, `lpips/lpips.py` and
`lpips/pretrained_networks.py`): the input in [-1, 1] is shifted and scaled per channel
(ScalingLayer: shift [-.030, -.088, -.188], scale [.458, .448, .450]); torchvision's VGG16
`features` give five taps, after modules 3, 8, 15, 22 and 29 (relu1_2, relu2_2, relu3_3, relu4_3,
relu5_3); each tap is unit-normalised over channels (x / (‖x‖ + 1e-10)), the two images'
normalised features are subtracted and squared, a learned 1×1 convolution without bias
(`lin{k}.model.1`, after a Dropout that is inactive in eval mode) weighs the channels, and the
spatial means of the five maps are summed. Our own re-implementation, written for
`torch.jit.script`, with one exported method:

* `distance(x, y)`  x, y [B, 3, H, W] in [-1, 1] -> [B] (differentiable in both)
* int attribute `channels_0` (64 for the real network), for checks

Weights come from two published files, because LPIPS ships only its linear layers:
`vgg.pth` (lpips v0.1: `lin0.model.1.weight` … `lin4.model.1.weight`) and torchvision's
`vgg16-397923af.pth` (`features.N.weight/bias`; the classifier is not used). A full LPIPS state dict
(`net.sliceK.N.*` + `lin*`) is accepted too. Widths are read from the shapes, so the tests' narrow
random network builds from the same code.
"""

import os
from collections import OrderedDict
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleclip_export.atomic import save_script_atomic
from styleclip_export.checkpoint import describe, load_checkpoint, load_strict

# torchvision vgg16 `features` (configuration "D"): conv indices; ReLUs follow each conv, max
# pools sit at 4, 9, 16, 23 (and 30, after the last tap, unused).
CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
POOL_INDICES = [4, 9, 16, 23]
TAPS = [3, 8, 15, 22, 29]
REFERENCE_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


class NetLin(nn.Module):
    """lpips.py `NetLinLayer(chn_in, use_dropout=True)`: Sequential(Dropout, Conv1x1 no bias);
    the Dropout is an Identity here (eval mode only), keeping the index 1 of the published name."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(OrderedDict([
            ("0", nn.Identity()),
            ("1", nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0, bias=False)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Lpips(nn.Module):
    def __init__(self, widths: List[int]):
        super().__init__()
        if len(widths) != len(CONV_INDICES):
            raise ValueError(f"VGG16 has {len(CONV_INDICES)} convolutions, got {len(widths)} widths")
        layers: List[nn.Module] = []
        in_ch = 3
        conv = 0
        for i in range(TAPS[-1] + 1):
            if i in CONV_INDICES:
                layers.append(nn.Conv2d(in_ch, widths[conv], kernel_size=3, padding=1))
                in_ch = widths[conv]
                conv += 1
            elif i in POOL_INDICES:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        tap_channels = [widths[CONV_INDICES.index(max(c for c in CONV_INDICES if c < t))] for t in TAPS]
        self.lin0 = NetLin(tap_channels[0])
        self.lin1 = NetLin(tap_channels[1])
        self.lin2 = NetLin(tap_channels[2])
        self.lin3 = NetLin(tap_channels[3])
        self.lin4 = NetLin(tap_channels[4])
        self.channels_0 = tap_channels[0]

    def taps(self, x: Tensor) -> List[Tensor]:
        out: List[Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == 3 or i == 8 or i == 15 or i == 22 or i == 29:
                out.append(x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + 1e-10))
        return out

    @torch.jit.export
    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise RuntimeError("distance expects two [B, 3, H, W] images of one shape, got {} and {}"
                               .format(x.shape, y.shape))
        shift = torch.tensor([-0.030, -0.088, -0.188], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        fx = self.taps((x - shift) / scale)
        fy = self.taps((y - shift) / scale)
        # Spatial mean of each weighted squared difference, summed over the five taps.
        total = self.lin0((fx[0] - fy[0]) ** 2).mean(dim=[1, 2, 3])
        total = total + self.lin1((fx[1] - fy[1]) ** 2).mean(dim=[1, 2, 3])
        total = total + self.lin2((fx[2] - fy[2]) ** 2).mean(dim=[1, 2, 3])
        total = total + self.lin3((fx[3] - fy[3]) ** 2).mean(dim=[1, 2, 3])
        return total + self.lin4((fx[4] - fy[4]) ** 2).mean(dim=[1, 2, 3])

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.distance(x, y)


def _load(path: str):
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ValueError(f"cannot read '{path}': file does not exist")
    raw = load_checkpoint(path)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"'{name}' is not a state dict: it holds {describe(raw)}")
    return raw


def load_lpips_state_dict(lin_path: str, vgg_path: str = None) -> "OrderedDict[str, Tensor]":
    """Our module's state dict from lpips' `vgg.pth` (+ torchvision's VGG16 file), or from one
    full LPIPS state dict holding both. Raises ValueError naming the file."""
    lin = _load(lin_path)
    out = OrderedDict()
    for k in range(5):
        key = f"lin{k}.model.1.weight"
        if key not in lin:
            raise ValueError(f"'{os.path.basename(lin_path)}' is not LPIPS' linear layers (no '{key}'); "
                             f"it holds {describe(lin)}")
        out[key] = lin[key].detach().float().clone()
    vgg = _load(vgg_path) if vgg_path else lin
    source = os.path.basename(vgg_path or lin_path)
    for i in CONV_INDICES:
        for leaf in ("weight", "bias"):
            names = [f"features.{i}.{leaf}"] + [f"net.slice{s}.{i}.{leaf}" for s in range(1, 6)]
            hit = next((n for n in names if n in vgg), None)
            if hit is None:
                raise ValueError(f"'{source}' has no VGG16 'features.{i}.{leaf}' (give torchvision's "
                                 f"vgg16-397923af.pth with --lpips-vgg)")
            out[f"features.{i}.{leaf}"] = vgg[hit].detach().float().clone()
    return out


def build_lpips(sd) -> nn.Module:
    widths = [sd[f"features.{i}.weight"].shape[0] for i in CONV_INDICES]
    return load_strict(Lpips(widths), sd, "LPIPS-VGG").eval()


def random_lpips_files(out_dir: str, width_divisor: int = 8, seed: int = 0):
    """Random weights written as the two published files (lins, torchvision VGG16 features) for
    tests; returns their paths."""
    g = torch.Generator().manual_seed(seed)
    m = Lpips([w // width_divisor for w in REFERENCE_WIDTHS])
    lin, vgg = OrderedDict(), OrderedDict()
    for k, t in m.state_dict().items():
        if k.startswith("lin"):
            lin[k] = torch.rand(t.shape, generator=g) * 0.1   # LPIPS' weights are non-negative
        elif k.endswith("bias"):
            vgg[k] = torch.randn(t.shape, generator=g) * 0.01
        else:
            vgg[k] = torch.randn(t.shape, generator=g) * (t[0].numel() ** -0.5) * 1.4
    vgg["classifier.0.weight"] = torch.zeros(2, 2)   # the file carries the classifier too
    paths = (os.path.join(out_dir, "lpips_vgg_lin.pth"), os.path.join(out_dir, "vgg16_features.pth"))
    torch.save(lin, paths[0])
    torch.save(vgg, paths[1])
    return paths


def export_lpips(lin_path: str, vgg_path: str, out_dir: str) -> dict:
    sd = load_lpips_state_dict(lin_path, vgg_path)
    model = build_lpips(sd)
    scripted = torch.jit.script(model)
    path = os.path.join(out_dir, "lpips.pt")
    save_script_atomic(scripted, path)
    reloaded = torch.jit.load(path, map_location="cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        got, ref, same = reloaded.distance(x, y), model.distance(x, y), reloaded.distance(x, x)
    if not torch.allclose(got, ref, rtol=1e-4, atol=1e-6) or same.abs().max() > 1e-6:
        raise RuntimeError("reloaded lpips.pt does not reproduce the eager module")
    return {"file": "lpips.pt", "kind": "lpips-vgg-0.1", "channels_0": model.channels_0,
            "input": "two images in [-1,1]; the projector compares them at up to 256 px",
            "source": [os.path.basename(lin_path)] + ([os.path.basename(vgg_path)] if vgg_path else [])}
