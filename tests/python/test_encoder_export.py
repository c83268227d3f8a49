#!/usr/bin/env python3
"""Checks scripts/styleclip_export/encoder.py (the e4e encoder exporter).

Run from the repository root:  /usr/bin/python3 tests/python/test_encoder_export.py
The published-layout check needs shared/fixtures/reference-keys/e4e_encoder4editing.json
($STYLECLIP_FIXTURES, else ../shared/fixtures); it is skipped when the fixtures are absent.

* the module built at the published size has exactly the published checkpoint's parameter names,
  shapes and order (621 tensors), so `e4e_ffhq_encode.pt` loads strictly;
* a random checkpoint in the published layout ({"state_dict": {"encoder.*", "decoder.*"},
  "latent_avg", "opts"}) exports, and the exported `encode` equals an independent functional
  forward written here from psp_encoders.py's description (taps after body modules, the FPN
  sums with align_corners=True upsampling, w0 repeated plus deltas, latent_avg added);
* a 1-D latent_avg is broadcast to every row; an encoder for another generator, or a checkpoint
  that is not e4e, is refused with a one-line message naming the file.
"""

import json
import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from styleclip_export import encoder as E  # noqa: E402
from checks import check, report  # noqa: E402

FIXTURES = os.environ.get("STYLECLIP_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")
KEYS_JSON = os.path.join(FIXTURES, "reference-keys", "e4e_encoder4editing.json")

# ---- an independent forward, from the state dict -------------------------------------------

def bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], False, 0.0, 1e-5)


def unit(x, sd, p, stride):
    r = bn(x, sd, p + ".res_layer.0")
    r = F.conv2d(r, sd[p + ".res_layer.1.weight"], padding=1)
    r = F.prelu(r, sd[p + ".res_layer.2.weight"])
    r = F.conv2d(r, sd[p + ".res_layer.3.weight"], stride=stride, padding=1)
    r = bn(r, sd, p + ".res_layer.4")
    s = F.adaptive_avg_pool2d(r, 1)
    s = torch.sigmoid(F.conv2d(F.relu(F.conv2d(s, sd[p + ".res_layer.5.fc1.weight"])),
                               sd[p + ".res_layer.5.fc2.weight"]))
    r = r * s
    if p + ".shortcut_layer.0.weight" in sd:
        short = bn(F.conv2d(x, sd[p + ".shortcut_layer.0.weight"], stride=stride), sd, p + ".shortcut_layer.1")
    else:
        short = x[:, :, ::stride, ::stride]      # MaxPool2d(1, stride)
    return r + short


def style_block(x, sd, p):
    i = 0
    while f"{p}.convs.{i}.weight" in sd:
        x = F.leaky_relu(F.conv2d(x, sd[f"{p}.convs.{i}.weight"], sd[f"{p}.convs.{i}.bias"], stride=2,
                                  padding=1), 0.01)
        i += 2
    w = sd[p + ".linear.weight"]
    return F.linear(x.flatten(1), w / math.sqrt(w.shape[1]), sd[p + ".linear.bias"])


def reference_encode(sd, latent_avg, x):
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(bn(x, sd, "input_layer.1"), sd["input_layer.2.weight"])
    n_units = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    depths = [sd[f"body.{i}.res_layer.1.weight"].shape[0] for i in range(n_units)]
    feats = []
    for i in range(n_units):
        stride = 2 if (i == 0 or depths[i] != depths[i - 1]) else 1
        x = unit(x, sd, f"body.{i}", stride)
        feats.append(x)
    # The last module of groups 2, 3, 4.
    ends = [i for i in range(n_units) if i == n_units - 1 or depths[i + 1] != depths[i]]
    c1, c2, c3 = feats[ends[1]], feats[ends[2]], feats[ends[3]]
    n_styles = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("styles."))
    w0 = style_block(c3, sd, "styles.0")
    w = w0.unsqueeze(1).repeat(1, n_styles, 1)
    p2 = F.interpolate(c3, size=c2.shape[2:], mode="bilinear", align_corners=True) + \
        F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"])
    p1 = F.interpolate(p2, size=c1.shape[2:], mode="bilinear", align_corners=True) + \
        F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"])
    for i in range(1, n_styles):
        f = c3 if i < 3 else (p2 if i < 7 else p1)
        w[:, i] += style_block(f, sd, f"styles.{i}")
    return w + latent_avg


# ---- checks ---------------------------------------------------------------------------------

@check("published names, shapes and order (e4e_encoder4editing.json)")
def published_layout():
    if not os.path.isfile(KEYS_JSON):
        return "skipped: no fixtures"
    ref = json.load(open(KEYS_JSON))["parameters"]
    units = [3, 4, 14, 3]
    widths = list(E.REFERENCE_WIDTHS)
    se = [w // 16 for w, n in zip(widths, units) for _ in range(n)]
    m = E.Encoder4Editing(widths, units, se, [4] * 3 + [5] * 4 + [6] * 11, 512, 256)
    got = [(k, list(v.shape)) for k, v in m.state_dict().items() if k != "latent_avg"]
    assert got == list(ref.items()), "layout differs from the published checkpoint"
    cfg = E.encoder_config({k: torch.empty(s) for k, s in ref.items() if "num_batches" not in k})
    assert (cfg["num_ws"], cfg["w_dim"], cfg["input_size"], cfg["units"]) == (18, 512, 256, units), cfg
    return f"{len(got)} tensors"


def published_like(tmp, num_ws=6, w_dim=24, seed=1, latent_1d=False):
    ck = E.random_encoder_checkpoint(num_ws, w_dim, seed=seed, width_divisor=16, units=(2, 2, 3, 1),
                                     input_size=64)
    ck["state_dict"]["decoder.style.1.weight"] = torch.zeros(3, 3)    # the checkpoint's generator
    ck["opts"] = {"stylegan_size": 1024}
    if latent_1d:
        ck["latent_avg"] = ck["latent_avg"][0]
    path = os.path.join(tmp, "e4e.pt")
    torch.save(ck, path)
    return path, ck


@check("exported encode = independent forward (taps, FPN, deltas, latent_avg)")
def forward_matches():
    with tempfile.TemporaryDirectory() as tmp:
        path, ck = published_like(tmp)
        section = E.export_encoder(path, tmp, 6, 24)
        m = torch.jit.load(os.path.join(tmp, "encoder.pt"))
        assert section["config"]["input_size"] == 64 and m.input_size == 64 and m.num_ws == 6
        sd = {k[len("encoder."):]: v for k, v in ck["state_dict"].items() if k.startswith("encoder.")}
        x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
        with torch.no_grad():
            got = m.encode(x)
            want = reference_encode(sd, ck["latent_avg"], x)
        assert got.shape == (3, 6, 24), got.shape
        err = (got - want).abs().max().item()
        assert err < 1e-4, f"max error {err:.3g}"
        # The rows differ (deltas are used) and latent_avg is in: not a constant answer.
        assert (got[:, 1] - got[:, 0]).abs().max() > 1e-3
        return f"max error {err:.2g}"


@check("1-D latent_avg is added to every row")
def latent_1d():
    with tempfile.TemporaryDirectory() as tmp:
        path, ck = published_like(tmp, latent_1d=True)
        E.export_encoder(path, tmp, 6, 24)
        m = torch.jit.load(os.path.join(tmp, "encoder.pt"))
        assert torch.equal(m.latent_avg, ck["latent_avg"].expand(6, 24))


@check("refusals: another generator's W+, a checkpoint that is not e4e")
def refusals():
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = published_like(tmp)
        for call, want in ((lambda: E.export_encoder(path, tmp, 18, 512), "generator takes [18, 512]"),):
            try:
                call()
                raise AssertionError("no error")
            except ValueError as e:
                assert want in str(e) and "\n" not in str(e), str(e)
        other = os.path.join(tmp, "g.pt")
        torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(2)}, other)
        try:
            E.export_encoder(other, tmp)
            raise AssertionError("no error")
        except ValueError as e:
            assert "'g.pt' is not an e4e encoder checkpoint" in str(e), str(e)


if __name__ == "__main__":
    sys.exit(report())
