#!/usr/bin/env python3
"""Checks the exporter on NVIDIA network pickles (scripts/styleclip_export/stylegan2_nvidia.py).

Run from anywhere:  /usr/bin/python3 tests/python/test_nvidia_export.py

* Recorded reference pickles (STYLECLIP_FIXTURES/stylegan-nvidia, made with NVIDIA's code; skipped
  with a reason when absent): the exported generator.pt reproduces NVIDIA's W (psi 1 and 0.7),
  images, style space (every `affine` output) and edited images, through both modulated
  convolution forms (with and without a gradient).
* Pickles written by tests/python/nvidia_pickle.py (always): the exported generator equals a
  direct statement of NVIDIA's layer formulas, written here from their paper and public
  `training/networks.py`, with a `conv_clamp` small enough that the clamp acts; conditional
  generators; and every refusal (other architectures, discriminator-only, truncated, missing)
  is one line, exit 3 (2 for a missing file), with nothing written.
"""

import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)

import nvidia_pickle  # noqa: E402
from checks import check, close, export_stylegan, exported_generator, report  # noqa: E402
from styleclip_export import safe_pickle  # noqa: E402

FIXTURES = os.path.join(os.environ.get("STYLECLIP_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")),
                        "stylegan-nvidia")
TMP = tempfile.mkdtemp(prefix="nvidia_export_")


def export(pkl, name):
    return export_stylegan(pkl, os.path.join(TMP, name))


def exported(pkl, name):
    return exported_generator(pkl, os.path.join(TMP, name))


# ---- the recorded reference pickles ----------------------------------------------------------

def fixture_parity(name):
    pkl = os.path.join(FIXTURES, f"{name}.pkl")
    if not os.path.isfile(pkl):
        return f"skipped: {FIXTURES} is absent (reference pickles made with NVIDIA's code)"
    g, _ = exported(pkl, name)
    e = torch.load(os.path.join(FIXTURES, f"{name}_expected.pt"))
    with torch.no_grad():
        w = g.mapping_conditional(e["z"], e["c"])
        errs = [close(w[:, None], e["ws_psi1"], 1e-5, "W (psi 1)")]
        w07 = g.w_avg + 0.7 * (w - g.w_avg)
        errs.append(close(w07[:, None], e["ws_psi07"], 1e-5, "W (psi 0.7)"))
        errs.append(close(g.synthesis(e["ws_psi07"], False), e["img_psi07"], 1e-4, "image"))
        styles = g.styles(e["ws_psi07"])
        if len(styles) != len(e["affine_outputs_psi07"]):
            raise AssertionError(f"{len(styles)} style layers, NVIDIA has {len(e['affine_outputs_psi07'])}")
        for s, ref, n in zip(styles, e["affine_outputs_psi07"], e["affine_names"]):
            errs.append(close(s, ref, 1e-4, f"S {n}"))
        errs.append(close(g.synthesis(e["ws_edited"], False), e["img_edited"], 1e-4, "edited image"))
    # The form the optimiser takes (a gradient wanted) must agree as well.
    ws = e["ws_edited"].clone().requires_grad_(True)
    img = g.synthesis(ws, False)
    img.sum().backward()
    errs.append(close(img.detach(), e["img_edited"], 1e-4, "image with a gradient"))
    return f"max error {max(errs):.2g}"


check("ada_tiny64.pkl (64 px, fp16 resolutions, conv_clamp) reproduces NVIDIA's W, S and images")(
    lambda: fixture_parity("ada_tiny64"))
check("ada_cond32.pkl (5 classes) reproduces NVIDIA's W, S and images")(
    lambda: fixture_parity("ada_cond32"))


# ---- NVIDIA's formulas, stated directly --------------------------------------------------------

def fc(net, x, act):
    """FullyConnectedLayer: weight·weight_gain, bias·bias_gain, then bias_act."""
    w = net.parameters["weight"] * net.attrs["weight_gain"]
    x = x.matmul(w.t()) + net.parameters["bias"] * net.attrs["bias_gain"]
    return F.leaky_relu(x, 0.2) * math.sqrt(2) if act else x


def norm2(x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def reference_mapping(G, z, c):
    m = G.child("mapping")
    x = norm2(z)
    if "embed" in m.children:
        x = torch.cat([x, norm2(fc(m.child("embed"), c, False))], dim=1)
    i = 0
    while f"fc{i}" in m.children:
        x = fc(m.child(f"fc{i}"), x, True)
        i += 1
    return x


def upfirdn(x, f, up, pad):
    """Zero-insertion upsampling by `up`, padding, then the 2-D filter (symmetric here)."""
    b, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(b, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = (f * up * up)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def reference_layer(L, x, w, up, clamp):
    styles = fc(L.child("affine"), w, False)
    weight = L.parameters["weight"][None] * styles[:, None, :, None, None]  # [B, O, I, k, k]
    weight = weight * (weight.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    out = []
    for i in range(x.shape[0]):
        if up == 2:  # transposed convolution, then the filter with gain 4 (conv2d_resample)
            y = F.conv_transpose2d(x[i:i + 1], weight[i].transpose(0, 1), stride=2)
            y = upfirdn(y, L.buffers["resample_filter"], 1, (1, 1)) * 4
        else:
            y = F.conv2d(x[i:i + 1], weight[i], padding=1)
        out.append(y)
    x = torch.cat(out) + L.buffers["noise_const"] * L.parameters["noise_strength"]
    x = F.leaky_relu(x + L.parameters["bias"][None, :, None, None], 0.2) * math.sqrt(2)
    return x.clamp(-clamp, clamp)


def reference_torgb(T, x, w, clamp):
    styles = fc(T.child("affine"), w, False) * T.attrs["weight_gain"]
    y = torch.stack([F.conv2d(x[i:i + 1], T.parameters["weight"] * styles[i][None, :, None, None])[0]
                     for i in range(x.shape[0])])
    return (y + T.parameters["bias"][None, :, None, None]).clamp(-clamp, clamp)


def reference_synthesis(G, ws, clamp):
    syn = G.child("synthesis")
    img = None
    x = None
    row = 0
    for r in syn.attrs["block_resolutions"]:
        b = syn.child(f"b{r}")
        if r == 4:
            x = b.parameters["const"][None].repeat(ws.shape[0], 1, 1, 1)
            x = reference_layer(b.child("conv1"), x, ws[:, row], 1, clamp)
            row += 1
        else:
            x = reference_layer(b.child("conv0"), x, ws[:, row], 2, clamp)
            x = reference_layer(b.child("conv1"), x, ws[:, row + 1], 1, clamp)
            row += 2
        y = reference_torgb(b.child("torgb"), x, ws[:, row], clamp)
        img = y if img is None else upfirdn(img, b.buffers["resample_filter"], 2, (2, 1)) + y
    return img


def synthetic_matches_formulas(c_dim, clamp, z_dim):
    pkl = os.path.join(TMP, f"synth_c{c_dim}_clamp{clamp}.pkl")
    nvidia_pickle.write(pkl, resolution=32, z_dim=z_dim, c_dim=c_dim, conv_clamp=clamp, seed=5)
    g, out = exported(pkl, f"synth_c{c_dim}_clamp{clamp}")
    G = safe_pickle.load_pickle(pkl)["G_ema"]
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, z_dim, generator=gen)
    c = torch.zeros(3, max(c_dim, 0))
    if c_dim:
        c[torch.arange(3), torch.tensor([0, 1, 2]) % c_dim] = 1
    with torch.no_grad():
        w = g.mapping_conditional(z, c)
        err_w = close(w, reference_mapping(G, z, c), 1e-5, "W")
        ws = w[:, None].repeat(1, g.num_ws, 1) + 0.5 * torch.randn(3, g.num_ws, w.shape[1], generator=gen)
        ref = reference_synthesis(G, ws, clamp)
        img = g.synthesis(ws, False)
        err_i = close(img, ref, 1e-4, "image")
        # A small clamp must be acting for the check to mean anything.
        unclamped = reference_synthesis(G, ws, 1e9)
        if clamp < 1 and (unclamped - ref).abs().max() < 1e-3:
            raise AssertionError("the clamp did not change the reference image; choose a smaller one")
    return f"W {err_w:.2g}, image {err_i:.2g}"


check("a synthetic NVIDIA pickle equals NVIDIA's formulas, with the clamp acting (conv_clamp 0.5)")(
    lambda: synthetic_matches_formulas(0, 0.5, 24))
check("a synthetic conditional pickle (3 classes) equals NVIDIA's formulas")(
    lambda: synthetic_matches_formulas(3, 256.0, 32))


# ---- refusals ----------------------------------------------------------------------------------

def refused(pkl, name, code, *needles):
    r, out = export(pkl, name)
    lines = r.stderr.strip().splitlines()
    if r.returncode != code or len(lines) != 1 or any(n not in lines[0] for n in needles):
        raise AssertionError(f"expected exit {code} and one line with {needles}, got {r.returncode}: "
                             f"{r.stderr!r}")
    if os.path.exists(out):
        raise AssertionError(f"'{out}' was written for a refused input")
    return lines[0]


def refuse_architecture(arch):
    pkl = os.path.join(TMP, f"{arch}.pkl")
    nvidia_pickle.write(pkl, architecture=arch)
    return refused(pkl, f"arch_{arch}", 3, f"'{arch}' architecture", "skip")


check("an 'orig' architecture generator is refused by name")(lambda: refuse_architecture("orig"))
check("a 'resnet' architecture generator is refused by name")(lambda: refuse_architecture("resnet"))


@check("a discriminator-only pickle: one line, exit 3, nothing written")
def _():
    pkl = os.path.join(TMP, "d_only.pkl")
    nvidia_pickle.write(pkl, only="D")
    return refused(pkl, "d_only", 3, "no generator", "Discriminator")


@check("a truncated pickle: one line, exit 3, nothing written")
def _():
    pkl = os.path.join(TMP, "whole.pkl")
    nvidia_pickle.write(pkl)
    with open(pkl, "rb") as f:
        data = f.read()
    cut = os.path.join(TMP, "cut.pkl")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    return refused(cut, "cut", 3, "cut.pkl")


@check("a missing file: one line, exit 2")
def _():
    return refused(os.path.join(TMP, "nope.pkl"), "nope", 2, "does not exist")


@check("G is exported when a snapshot has no G_ema; the manifest says so and records NVIDIA's sizes")
def _():
    import json
    import pickle
    snap = nvidia_pickle.snapshot(resolution=16, z_dim=20, conv_clamp=64.0)
    del snap["G_ema"]
    pkl = os.path.join(TMP, "g_only.pkl")
    with open(pkl, "wb") as f:
        pickle.dump(snap, f, protocol=4)
    _, out = exported(pkl, "g_only")
    with open(os.path.join(out, "manifest.json")) as f:
        gen = json.load(f)["generator"]
    want = {"architecture": "stylegan2-nvidia", "network": "G", "z_dim": 20, "w_dim": 32, "c_dim": 0,
            "num_ws": 6, "resolution": 16, "conv_clamp": 64.0, "seed_convention": "numpy-randomstate"}
    wrong = {k: (gen.get(k), v) for k, v in want.items() if gen.get(k) != v}
    if wrong:
        raise AssertionError(f"manifest fields (got, want): {wrong}")


sys.exit(report())
