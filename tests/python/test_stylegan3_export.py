#!/usr/bin/env python3
"""Checks the StyleGAN3 exporter (scripts/styleclip_export/stylegan3.py through
scripts/export_bundle.py --stylegan).

Run from anywhere:  /usr/bin/python3 tests/python/test_stylegan3_export.py

* Recorded reference pickles (STYLECLIP_FIXTURES/stylegan-nvidia/sg3t_tiny32.pkl and
  sg3r_tiny32.pkl, made with NVIDIA's code; skipped with a reason when absent): the exported
  generator.pt reproduces NVIDIA's W (psi 1, and psi 0.7 truncated as the C++ side does it), style
  space (every `affine` output), images and edited images, with and without a gradient, one image
  or a batch; synthesis_prefix/synthesis_suffix give the same image for every split; set_transform
  with the identity changes nothing and a translation moves the image the way NVIDIA's
  gen_images.py convention says; the filters this repository designs for random generators equal
  the ones NVIDIA's code designed.
* Pickles written by tests/python/sg3_pickle.py (always): T and R export; the exported generator
  equals a direct, slow statement of NVIDIA's formulas (zero insertion and full convolutions, as
  `_filtered_lrelu_ref` and `upfirdn2d`'s reference path compute them), written here from the
  paper and the public `training/networks_stylegan3.py`, with a clamp small enough to act and a
  conditional generator, and so does its gradient; scripted equals eager; the manifest has the
  StyleGAN3 fields (and validates against docs/manifest.schema.json when python3-jsonschema is
  installed); every refusal is one line, exit 3, with nothing written.
"""

import json
import math
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)

import sg3_pickle  # noqa: E402
from checks import check, close, export_stylegan, exported_generator, report  # noqa: E402
from styleclip_export import safe_pickle, stylegan3  # noqa: E402

FIXTURES = os.path.join(os.environ.get("STYLECLIP_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")),
                        "stylegan-nvidia")
TMP = tempfile.mkdtemp(prefix="stylegan3_export_")
SKIP = f"skipped: {FIXTURES} is absent (reference pickles made with NVIDIA's code)"


def export(pkl, name):
    return export_stylegan(pkl, os.path.join(TMP, name))


def exported(pkl, name):
    return exported_generator(pkl, os.path.join(TMP, name))


def manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def make_transform(translate, angle):
    """NVIDIA's gen_images.py make_transform: [[c, s, tx], [-s, c, ty], [0, 0, 1]], angle in
    degrees. gen_images.py passes its inverse to the generator."""
    s, c = math.sin(angle / 360.0 * math.pi * 2), math.cos(angle / 360.0 * math.pi * 2)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]])


def prefix_suffix_identity(g, styles, tol=1e-5):
    full = g.synthesis_from_styles(styles, False)
    errs = []
    for k in range(g.num_ws - 1):  # upto = 0 .. num_layers
        prefix = g.synthesis_prefix(styles, k)
        errs.append(close(g.synthesis_suffix(prefix, k, styles), full, tol, f"prefix/suffix at {k}"))
    return max(errs)


# ---- the recorded reference pickles -----------------------------------------------------------

def fixture_parity(name, arch):
    pkl = os.path.join(FIXTURES, f"{name}.pkl")
    if not os.path.isfile(pkl):
        return SKIP
    g, out = exported(pkl, name)
    e = torch.load(os.path.join(FIXTURES, f"{name}_expected.pt"))
    with torch.no_grad():
        w = g.mapping_conditional(e["z"], e["c"])
        errs = [close(w[:, None], e["ws_psi1"], 1e-5, "W (psi 1)")]
        w07 = g.w_avg + 0.7 * (w - g.w_avg)  # what the C++ side does
        errs.append(close(w07[:, None], e["ws_psi07"], 1e-5, "W (psi 0.7)"))
        styles = g.styles(e["ws_psi07"])
        if len(styles) != len(e["affine_outputs_psi07"]):
            raise AssertionError(f"{len(styles)} style entries, NVIDIA has {len(e['affine_outputs_psi07'])}")
        for s, ref, n in zip(styles, e["affine_outputs_psi07"], e["affine_names"]):
            errs.append(close(s, ref, 1e-4, f"S {n}"))
        errs.append(close(g.synthesis(e["ws_psi07"], False), e["img_psi07"], 1e-4, "image"))
        errs.append(close(g.synthesis_from_styles(styles, True), e["img_psi07"], 1e-4,
                          "image from styles (randomize_noise ignored)"))
        errs.append(close(g.forward(e["ws_edited"]), e["img_edited"], 1e-4, "edited image"))
        one = torch.cat([g.synthesis(e["ws_psi07"][i:i + 1], False) for i in range(4)])
        errs.append(close(one, e["img_psi07"], 1e-4, "images one at a time"))
        errs.append(prefix_suffix_identity(g, styles))
    # The form the optimiser takes (a gradient wanted) must agree as well.
    ws = e["ws_edited"].clone().requires_grad_(True)
    img = g.synthesis(ws, False)
    img.square().sum().backward()
    errs.append(close(img.detach(), e["img_edited"], 1e-4, "image with a gradient"))
    if not torch.isfinite(ws.grad).all() or ws.grad.abs().sum() == 0:
        raise AssertionError("no usable gradient with respect to W+")
    gen = manifest(out)["generator"]
    want = {"family": "stylegan3", "architecture": arch, "resolution": 32, "num_ws": 16,
            "num_layers": 14, "w_dim": 32, "z_dim": 32, "c_dim": 0,
            "seed_convention": "numpy-randomstate", "network": "G_ema"}
    wrong = {k: (gen.get(k), v) for k, v in want.items() if gen.get(k) != v}
    if wrong:
        raise AssertionError(f"manifest fields (got, want): {wrong}")
    return f"max error {max(errs):.2g}"


check("sg3t_tiny32.pkl (StyleGAN3-T) reproduces NVIDIA's W, S and images; prefix/suffix at every split")(
    lambda: fixture_parity("sg3t_tiny32", "stylegan3-t"))
check("sg3r_tiny32.pkl (StyleGAN3-R, radial filters) reproduces NVIDIA's W, S and images; prefix/suffix")(
    lambda: fixture_parity("sg3r_tiny32", "stylegan3-r"))


@check("set_transform: the identity changes nothing; inv(make_transform((4/32, 0), 0)) moves T's image 4 px right (ty: down); +90° turns R's counter-clockwise")
def _():
    pkl = os.path.join(FIXTURES, "sg3t_tiny32.pkl")
    if not os.path.isfile(pkl):
        return SKIP
    g, _ = exported(pkl, "sg3t_transform")
    e = torch.load(os.path.join(FIXTURES, "sg3t_tiny32_expected.pt"))
    ws = e["ws_psi07"]
    with torch.no_grad():
        if close(g.get_transform(), torch.eye(3), 0, "stored transform") != 0:
            raise AssertionError("the exported transform is not the identity")
        g.set_transform(torch.eye(3))
        err = close(g.synthesis(ws, False), e["img_psi07"], 1e-4, "image with the identity transform")
        base = g.synthesis(ws, False)
        g.set_transform(torch.from_numpy(np.linalg.inv(make_transform((4 / 32, 0), 0))).float())
        moved = g.synthesis(ws, False)
        g.set_transform(torch.from_numpy(np.linalg.inv(make_transform((0, 4 / 32), 0))).float())
        lowered = g.synthesis(ws, False)
        g.set_transform(torch.eye(3))
        again = g.synthesis(ws, False)
    close(again, base, 1e-6, "image after resetting the transform")

    def mismatch(shift):  # compare the interior, away from the borders that enter or leave
        return (moved[..., 8:24, 8:24] - torch.roll(base, shift, dims=3)[..., 8:24, 8:24]).abs().mean().item()

    right, left, none = mismatch(4), mismatch(-4), mismatch(0)
    if not right < 0.5 * min(left, none):
        raise AssertionError(f"the image did not move 4 px right: mean difference {right:.3g} "
                             f"(right), {left:.3g} (left), {none:.3g} (unmoved)")
    down = (lowered - torch.roll(base, 4, dims=2))[..., 8:24, 8:24].abs().mean().item()
    up = (lowered - torch.roll(base, -4, dims=2))[..., 8:24, 8:24].abs().mean().item()
    if not down < 0.5 * up:
        raise AssertionError(f"ty = 4/32 did not move the image 4 px down ({down:.3g} vs {up:.3g} up)")
    # R is equivariant to rotation: +90° turns the image a quarter counter-clockwise as displayed
    # (rows downwards), which torch.rot90(·, 1, dims=[2, 3]) does.
    g, _ = exported(os.path.join(FIXTURES, "sg3r_tiny32.pkl"), "sg3r_transform")
    ws = torch.load(os.path.join(FIXTURES, "sg3r_tiny32_expected.pt"))["ws_psi07"]
    with torch.no_grad():
        base = g.synthesis(ws, False)
        g.set_transform(torch.from_numpy(np.linalg.inv(make_transform((0, 0), 90))).float())
        turned = g.synthesis(ws, False)
    ccw = (turned - torch.rot90(base, 1, dims=[2, 3]))[..., 8:24, 8:24].abs().mean().item()
    cw = (turned - torch.rot90(base, -1, dims=[2, 3]))[..., 8:24, 8:24].abs().mean().item()
    if not ccw < 0.5 * cw:
        raise AssertionError(f"+90° did not turn the image counter-clockwise ({ccw:.3g} vs {cw:.3g})")
    return (f"identity error {err:.2g}; 4 px right {right:.3g} vs left {left:.3g}, unmoved "
            f"{none:.3g}; R +90°: counter-clockwise {ccw:.3g} vs clockwise {cw:.3g}")


@check("the filters and sizes designed here equal those NVIDIA's code designed (both reference pickles)")
def _():
    if not os.path.isfile(os.path.join(FIXTURES, "sg3t_tiny32.pkl")):
        return SKIP
    worst = 0.0
    for name in ("sg3t_tiny32", "sg3r_tiny32"):
        G = safe_pickle.load_pickle(os.path.join(FIXTURES, f"{name}.pkl"))["G_ema"]
        cfg = stylegan3.describe(G)
        spec = stylegan3.network_spec(32, int(cfg["channel_base"]), int(cfg["channel_max"]),
                                      conv_kernel=cfg["conv_kernel"],
                                      use_radial_filters=cfg["use_radial_filters"])
        if spec["input"]["size"] != cfg["input"]["size"] or spec["input"]["channels"] != cfg["input"]["channels"]:
            raise AssertionError(f"{name}: input layer {spec['input']} vs {cfg['input']}")
        for ours, theirs in zip(spec["layers"], cfg["layers"]):
            for key in ("in_size", "out_size", "in_channels", "out_channels", "up_factor",
                        "down_factor", "padding", "conv_kernel"):
                if ours[key] != theirs[key]:
                    raise AssertionError(f"{name} {theirs['name']}.{key}: {ours[key]} vs {theirs[key]}")
            for key in ("up_filter", "down_filter"):
                if (ours[key] is None) != (theirs[key] is None):
                    raise AssertionError(f"{name} {theirs['name']}.{key}: present in one only")
                if ours[key] is not None:
                    worst = max(worst, close(torch.from_numpy(ours[key]), theirs[key], 1e-7,
                                             f"{name} {theirs['name']}.{key}"))
    return f"max filter difference {worst:.2g}"


@check("Bessel J1 (for the radial filters) matches tabulated values")
def _():
    x = np.array([0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
    # Abramowitz & Stegun table 9.1 / standard tables.
    want = np.array([0.2422684577, 0.4400505857, 0.5767248078, -0.3275791376, 0.0434727462,
                     -0.1187510626])
    err = np.abs(stylegan3.bessel_j1(x) - want).max()
    if not err < 1e-9:
        raise AssertionError(f"J1 error {err:.3g}")
    return f"max error {err:.2g}"


# ---- NVIDIA's formulas, stated directly -------------------------------------------------------

def fc(net, x, lrelu=False):
    """FullyConnectedLayer: x·(weight·weight_gain)ᵀ + bias·bias_gain, lrelu × √2 for the mapping."""
    w = net.parameters["weight"] * float(net.attrs["weight_gain"])
    x = x.matmul(w.t()) + net.parameters["bias"] * float(net.attrs["bias_gain"])
    return F.leaky_relu(x, 0.2) * math.sqrt(2) if lrelu else x


def norm2(x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def reference_mapping(G, z, c):
    m = G.child("mapping")
    x = norm2(z)
    if "embed" in m.children:
        x = torch.cat([x, norm2(fc(m.child("embed"), c))], dim=1)
    i = 0
    while f"fc{i}" in m.children:
        x = fc(m.child(f"fc{i}"), x, True)
        i += 1
    return x


def upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """upfirdn2d's definition: insert up − 1 zeros after each sample, pad (negative: crop)
    [x0, x1, y0, y1], convolve with f (1-D: separably, with gain^(1/2) per axis), keep every
    down-th sample."""
    if f is None:
        f = torch.ones(1, 1)
    b, c, h, w = x.shape
    y = x.new_zeros(b, c, h * up, w * up)
    y[:, :, ::up, ::up] = x
    y = F.pad(y, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
    y = y[:, :, max(-pad[2], 0):y.shape[2] - max(-pad[3], 0), max(-pad[0], 0):y.shape[3] - max(-pad[1], 0)]
    f = f * gain ** (f.dim() / 2)
    f = f.flip(list(range(f.dim())))  # convolution, not correlation
    if f.dim() == 1:
        y = F.conv2d(y, f.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        y = F.conv2d(y, f.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    else:
        y = F.conv2d(y, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return y[:, :, ::down, ::down]


def reference_input(inp, w):
    t = fc(inp.child("affine"), w)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    b = w.shape[0]
    m_r = torch.eye(3).unsqueeze(0).repeat(b, 1, 1)
    m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    m_t = torch.eye(3).unsqueeze(0).repeat(b, 1, 1)
    m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
    transforms = m_r @ m_t @ inp.buffers["transform"].unsqueeze(0)
    freqs = inp.buffers["freqs"].unsqueeze(0)
    phases = inp.buffers["phases"].unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
    freqs = freqs @ transforms[:, :2, :2]
    rate, bandwidth = float(inp.attrs["sampling_rate"]), float(inp.attrs["bandwidth"])
    amplitudes = (1 - (freqs.norm(dim=2) - bandwidth) / (rate / 2 - bandwidth)).clamp(0, 1)
    size = int(np.asarray(inp.attrs["size"]).reshape(-1)[0])
    theta = torch.tensor([[0.5 * size / rate, 0, 0], [0, 0.5 * size / rate, 0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, size, size], align_corners=False)
    x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
    x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
    channels = inp.parameters["weight"].shape[0]
    x = x @ (inp.parameters["weight"] / math.sqrt(channels)).t()
    return x.permute(0, 3, 1, 2)


def reference_layer(L, x, w):
    a = L.attrs
    torgb = bool(a["is_torgb"])
    styles = fc(L.child("affine"), w)
    weight = L.parameters["weight"]
    k = int(a["conv_kernel"])
    if torgb:
        styles = styles * (1 / math.sqrt(int(a["in_channels"]) * k * k))
    else:  # pre-normalisation (batch-wide RMS of the styles, as NVIDIA), then demodulation
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    wm = weight[None] * styles[:, None, :, None, None]
    if not torgb:
        wm = wm * (wm.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    wm = wm * L.buffers["magnitude_ema"].rsqrt()
    y = torch.cat([F.conv2d(x[i:i + 1], wm[i], padding=k - 1) for i in range(x.shape[0])])
    clamp = a["conv_clamp"]
    y = y + L.parameters["bias"][None, :, None, None]
    up, down = int(a["up_factor"]), int(a["down_factor"])
    y = upfirdn2d(y, L.buffers.get("up_filter"), up=up, pad=a["padding"], gain=up ** 2)
    if not torgb:
        y = F.leaky_relu(y, 0.2) * math.sqrt(2)
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return upfirdn2d(y, L.buffers.get("down_filter"), down=down)


def reference_synthesis(G, ws):
    syn = G.child("synthesis")
    x = reference_input(syn.child("input"), ws[:, 0])
    for i, name in enumerate(syn.attrs["layer_names"]):
        x = reference_layer(syn.child(name), x, ws[:, i + 1])
    return x * float(syn.attrs["output_scale"])


def synthetic_matches_formulas(config, c_dim, clamp):
    name = f"synth_{config}_c{c_dim}_clamp{clamp}"
    pkl = os.path.join(TMP, f"{name}.pkl")
    sg3_pickle.write(pkl, config=config, resolution=32, num_layers=8, c_dim=c_dim, z_dim=24,
                     conv_clamp=clamp, seed=5)
    g, out = exported(pkl, name)
    G = safe_pickle.load_pickle(pkl)["G_ema"]
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, 24, generator=gen)
    c = torch.zeros(3, c_dim)
    if c_dim:
        c[torch.arange(3), torch.arange(3) % c_dim] = 1
    with torch.no_grad():
        w = g.mapping_conditional(z, c)
        err_w = close(w, reference_mapping(G, z, c), 1e-5, "W")
        ws = w[:, None].repeat(1, g.num_ws, 1) + 0.5 * torch.randn(3, g.num_ws, w.shape[1], generator=gen)
        ref = reference_synthesis(G, ws)
        err_i = close(g.synthesis(ws, False), ref, 1e-4, "image")
        err_1 = close(g.synthesis(ws[1:2], False), ref[1:2], 1e-4, "one image")
        if clamp < 1:  # the clamp must be acting for the check to mean anything
            syn = G.child("synthesis")
            for n in syn.attrs["layer_names"]:
                syn.child(n).attrs["conv_clamp"] = None
            if (reference_synthesis(G, ws) - ref).abs().max() < 1e-3:
                raise AssertionError("the clamp did not change the reference image; choose a smaller one")
            for n in syn.attrs["layer_names"]:
                syn.child(n).attrs["conv_clamp"] = clamp
        err_p = prefix_suffix_identity(g, g.styles(ws))
    # The gradient with respect to W+ (the optimiser's path) equals the reference's.
    target = torch.randn(3, 3, 32, 32, generator=gen)
    ws1 = ws.clone().requires_grad_(True)
    (g.synthesis(ws1, False) * target).sum().backward()
    ws2 = ws.clone().requires_grad_(True)
    (reference_synthesis(G, ws2) * target).sum().backward()
    scale = ws2.grad.abs().max().item()
    err_g = close(ws1.grad / scale, ws2.grad / scale, 1e-4, "gradient (relative to its largest)")
    return f"W {err_w:.2g}, image {err_i:.2g} (one: {err_1:.2g}), gradient {err_g:.2g}, prefix/suffix {err_p:.2g}"


check("a synthetic StyleGAN3-T pickle equals NVIDIA's formulas, with the clamp acting (conv_clamp 0.5)")(
    lambda: synthetic_matches_formulas("t", 0, 0.5))
check("a synthetic StyleGAN3-R pickle (radial filters) equals NVIDIA's formulas, conditional (3 classes)")(
    lambda: synthetic_matches_formulas("r", 3, 256))


@check("sg3_pickle T and R at 32 px, 14 layers: exported generator.pt == eager generator; manifest fields")
def _():
    details = []
    for config in ("t", "r"):
        pkl = os.path.join(TMP, f"full_{config}.pkl")
        r = subprocess.run([sys.executable, os.path.join(HERE, "sg3_pickle.py"), "--config", config,
                            "--resolution", "32", "--out", pkl, "--seed", "11"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"sg3_pickle.py failed: {r.stderr}")
        g, out = exported(pkl, f"full_{config}")
        eager, _ = stylegan3.build_generator(safe_pickle.load_pickle(pkl)["G_ema"])
        ws = torch.randn(2, eager.num_ws, eager.w_dim, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            err = close(g.synthesis(ws, False), eager.synthesis(ws, False), 1e-6, f"{config}: scripted vs eager")
            styles = g.styles(ws)
        gen = manifest(out)["generator"]
        n = eager.num_ws
        want = {"family": "stylegan3", "architecture": f"stylegan3-{config}", "num_ws": n,
                "num_layers": n - 2, "style_dims": [4] + [32] * (n - 1),
                "style_is_rgb": [False] * (n - 1) + [True],
                "style_is_input": [True] + [False] * (n - 1),
                "conv_kernel": 3 if config == "t" else 1, "use_radial_filters": config == "r",
                "seed_convention": "numpy-randomstate", "w_avg_source": "pickle G_ema.mapping.w_avg"}
        wrong = {k: (gen.get(k), v) for k, v in want.items() if gen.get(k) != v}
        if wrong:
            raise AssertionError(f"manifest fields (got, want): {wrong}")
        with torch.no_grad():  # each entry's map: its sampling rate plus the margins, or R
            x = g.synthesis_prefix(styles, 0)[0]
            sizes = [int(x.shape[-1])]
            for k in range(1, n - 1):
                sizes.append(int(g.synthesis_prefix(styles, k)[0].shape[-1]))
            sizes.append(32)
        rates = gen["style_resolutions"]
        margins = {s - r for s, r in zip(sizes, rates)}
        if (len(rates) != n or rates[-1] != 32 or rates != sorted(rates) or min(rates) < 1
                or not margins <= {0, 2 * gen["margin_size"]} or len(gen["channels"]) != n):
            raise AssertionError(f"style_resolutions {rates}, measured map sizes {sizes}")
        details.append(f"{config}: {err:.2g}")
    return ", ".join(details)


@check("the StyleGAN3 manifest validates against docs/manifest.schema.json")
def _():
    try:
        import jsonschema
    except ImportError:
        return "skipped: python3-jsonschema is not installed"
    with open(os.path.join(ROOT, "docs", "manifest.schema.json")) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    v = cls(schema, format_checker=cls.FORMAT_CHECKER)
    pkl = os.path.join(TMP, "schema.pkl")
    sg3_pickle.write(pkl, config="r", resolution=16, num_layers=4, c_dim=2, seed=1)
    _, out = exported(pkl, "schema")
    m = manifest(out)
    errs = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(m)]
    if errs:
        raise AssertionError("; ".join(errs))
    m["generator"]["style_is_input"][1] = True
    if not list(v.iter_errors(m)):
        raise AssertionError("a second input entry was accepted")
    return f"{len(m['generator']['style_dims'])} style entries"


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


def mutated(name, mutate):
    """A small T snapshot whose recorded G_ema is changed by `mutate(G_ema Net meta state)`."""
    snap = sg3_pickle.snapshot(config="t", resolution=16, num_layers=4, seed=2)
    mutate(snap["G_ema"].meta["state"])
    path = os.path.join(TMP, f"{name}.pkl")
    with open(path, "wb") as f:
        pickle.dump(snap, f, protocol=4)
    return path


def _layer(state, idx):
    syn = state["_modules"]["synthesis"].meta["state"]
    return syn["_modules"][syn["layer_names"][idx]].meta["state"]


@check("a StyleGAN3 generator making 4-channel images: one line, exit 3, nothing written")
def _():
    def four(state):
        state["img_channels"] = 4
        state["_init_kwargs"]["img_channels"] = 4
    return refused(mutated("rgba", four), "rgba", 3, "4-channel")


@check("a layer without magnitude_ema: one line, exit 3, nothing written")
def _():
    return refused(mutated("no_ema", lambda s: _layer(s, 2)["_buffers"].pop("magnitude_ema")),
                   "no_ema", 3, "magnitude_ema")


@check("a layer whose padding does not give its recorded size: one line, exit 3, nothing written")
def _():
    def pad(state):
        _layer(state, 1)["padding"] = [p + 2 for p in _layer(state, 1)["padding"]]
    return refused(mutated("bad_pad", pad), "bad_pad", 3, "recorded size")


@check("a 2-D upsampling filter (never designed by NVIDIA's code): one line, exit 3, nothing written")
def _():
    def two_d(state):
        b = _layer(state, 0)["_buffers"]
        b["up_filter"] = b["up_filter"][:, None] * b["up_filter"][None, :]
    return refused(mutated("up2d", two_d), "up2d", 3, "filters")


@check("a truncated StyleGAN3 pickle: one line, exit 3, nothing written")
def _():
    pkl = os.path.join(TMP, "whole_sg3.pkl")
    sg3_pickle.write(pkl, config="r", resolution=16, num_layers=4)
    with open(pkl, "rb") as f:
        data = f.read()
    cut = os.path.join(TMP, "cut_sg3.pkl")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    return refused(cut, "cut_sg3", 3, "cut_sg3.pkl")


if __name__ == "__main__":
    sys.exit(report())
