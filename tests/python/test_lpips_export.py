#!/usr/bin/env python3
"""Checks scripts/styleclip_export/lpips.py (LPIPS-VGG v0.1 for the photo projector).

Run from the repository root:  /usr/bin/python3 tests/python/test_lpips_export.py

No reference outputs of LPIPS exist in the fixtures, so the exported module is compared with an
independent functional statement of the metric written here from the paper and lpips' code
(scale the [-1, 1] input, VGG16 relu1_2 … relu5_3, unit-normalise over channels, squared
difference, 1×1 weights, spatial mean, sum), with random weights in the two published layouts.
"""

import os
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from styleclip_export import lpips as L  # noqa: E402
from checks import check, report  # noqa: E402

def reference(lin, vgg, x, y):
    """LPIPS from the state dicts, step by step."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def features(t):
        t = (t - shift) / scale
        taps = []
        # VGG16 "D": two convs, pool, two, pool, three, pool, three, pool, three (taps after the
        # last ReLU of each block).
        blocks = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
        for b, convs in enumerate(blocks):
            if b > 0:
                t = F.max_pool2d(t, 2, 2)
            for i in convs:
                t = F.relu(F.conv2d(t, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
            taps.append(t)
        return taps

    total = 0
    for k, (a, b) in enumerate(zip(features(x), features(y))):
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((na - nb) ** 2, lin[f"lin{k}.model.1.weight"]).mean(dim=[1, 2, 3])
    return total


@check("exported distance = the metric step by step; 0 for equal images; symmetric")
def matches():
    with tempfile.TemporaryDirectory() as tmp:
        lin_p, vgg_p = L.random_lpips_files(tmp, 8, seed=3)
        L.export_lpips(lin_p, vgg_p, tmp)
        m = torch.jit.load(os.path.join(tmp, "lpips.pt"))
        lin, vgg = torch.load(lin_p), torch.load(vgg_p)
        g = torch.Generator().manual_seed(1)
        x = torch.rand(3, 3, 48, 48, generator=g) * 2 - 1
        y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
        with torch.no_grad():
            got = m.distance(x, y)
            want = reference(lin, vgg, x, y)
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-7), (got, want)
            assert m.distance(x, x).abs().max() < 1e-7
            assert torch.allclose(m.distance(y, x), got, rtol=1e-5)
            far = m.distance(x, torch.rand(x.shape, generator=g) * 2 - 1)
            assert (far > got).all(), "a random image should be further than a noisy copy"
        return f"{got.tolist()}"


@check("a full LPIPS state dict (net.sliceK.N.*) loads to the same metric")
def full_layout():
    with tempfile.TemporaryDirectory() as tmp:
        lin_p, vgg_p = L.random_lpips_files(tmp, 8, seed=4)
        lin, vgg = torch.load(lin_p), torch.load(vgg_p)
        full = dict(lin)
        bounds = [(1, 0, 4), (2, 4, 9), (3, 9, 16), (4, 16, 23), (5, 23, 30)]
        for k, v in vgg.items():
            if not k.startswith("features."):
                continue
            i = int(k.split(".")[1])
            s = next(s for s, a, b in bounds if a <= i < b)
            full[f"net.slice{s}.{i}.{k.split('.')[2]}"] = v
        full_p = os.path.join(tmp, "full.pth")
        torch.save(full, full_p)
        a = L.build_lpips(L.load_lpips_state_dict(full_p))
        b = L.build_lpips(L.load_lpips_state_dict(lin_p, vgg_p))
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        y = torch.rand(2, 3, 32, 32) * 2 - 1
        with torch.no_grad():
            assert torch.equal(a.distance(x, y), b.distance(x, y))


@check("refusals name the file and the fix")
def refusals():
    with tempfile.TemporaryDirectory() as tmp:
        lin_p, vgg_p = L.random_lpips_files(tmp, 8)
        for args, want in (((vgg_p, None), "is not LPIPS' linear layers"),
                           ((lin_p, None), "has no VGG16 'features.0.weight'"),
                           ((lin_p, lin_p), "has no VGG16")):
            try:
                L.load_lpips_state_dict(*args)
                raise AssertionError(f"no error for {args}")
            except ValueError as e:
                assert want in str(e) and "\n" not in str(e), str(e)


if __name__ == "__main__":
    sys.exit(report())
