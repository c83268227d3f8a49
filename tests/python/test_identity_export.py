#!/usr/bin/env python3
"""Checks scripts/styleclip_export/identity.py against the arcface-irse50 reference fixtures.

Run from the repository root:  /usr/bin/python3 tests/python/test_identity_export.py
Fixtures: $STYLECLIP_FIXTURES, else ../shared/fixtures relative to the repository root; when absent
the check is skipped (exit 0).

What the fixtures say (shared/fixtures/README.md, arcface-irse50 and reference-keys):
`narrow_expected.pt` was computed by the reference `Backbone(112, 50, "ir_se")` in eval mode from
`narrow.pth` (widths / 4, 64-wide embedding), in fp32; the export must reproduce it to 1e-4, both
straight from 112 px input and through StyleCLIP's pool -> crop -> pool preprocessing
(criteria/id_loss.py `extract_feats`), which is written out here in plain torch as the C++ side
will do it. `reference-keys/arcface_ir_se50.json` lists the published `model_ir_se50.pth` tensors.
"""

import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from styleclip_export import identity as I  # noqa: E402
from checks import check, report, results  # noqa: E402

FIXTURES = os.environ.get("STYLECLIP_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")
ARC_DIR = os.path.join(FIXTURES, "arcface-irse50")
KEYS_JSON = os.path.join(FIXTURES, "reference-keys", "arcface_ir_se50.json")

TOL = 1e-4            # README: expect 1e-4 agreement in fp32

errors = {}           # tensor name -> max abs error, for the summary


def max_abs(a, b):
    return (a.float() - b.float()).abs().max().item()


def stylegan_preprocess(img):
    """criteria/id_loss.py `extract_feats`: pool to 256 unless already 256, crop, pool to 112."""
    if img.shape[2] != 256:
        img = F.adaptive_avg_pool2d(img, (256, 256))
    img = img[:, :, 35:223, 32:220]
    return F.adaptive_avg_pool2d(img, (112, 112))


def expect_value_error(fn, *needles):
    try:
        fn()
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg, f"message is not one line: {msg!r}"
        for n in needles:
            assert n in msg, f"{n!r} not in {msg!r}"
        return msg
    raise AssertionError("no ValueError raised")


def main():
    if not os.path.isdir(ARC_DIR) or not os.path.isfile(KEYS_JSON):
        print(f"SKIP: ArcFace fixtures not found at {os.path.normpath(ARC_DIR)} or "
              f"{os.path.normpath(KEYS_JSON)} (set STYLECLIP_FIXTURES to the shared fixtures folder)")
        return 0
    # Another build may be running: stay on one or two cores.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(0)
    with open(KEYS_JSON) as f:
        ref = json.load(f)
    ref_params = ref["parameters"]
    exp = torch.load(os.path.join(ARC_DIR, "narrow_expected.pt"))
    tmp = tempfile.TemporaryDirectory(prefix="identity_export_test_")

    @check("full-size random state dict and our module match reference-keys/arcface_ir_se50.json")
    def _():
        sd = I.random_identity_state_dict(seed=0, width_divisor=1, embed_dim=512)
        assert len(ref_params) == 397, len(ref_params)
        assert list(sd) == list(ref_params), \
            f"names differ: extra {sorted(set(sd) - set(ref_params))[:5]}, " \
            f"missing {sorted(set(ref_params) - set(sd))[:5]}"
        wrong = [k for k in ref_params if list(sd[k].shape) != ref_params[k]]
        assert not wrong, f"shapes differ: {[(k, list(sd[k].shape), ref_params[k]) for k in wrong[:5]]}"
        n = sum(v.numel() for v in sd.values())
        assert n == ref["count"], f"{n} elements, the JSON says {ref['count']}"
        model = I.build_identity(sd)
        own = model.state_dict()
        assert list(own) == list(ref_params), "module state_dict() keys differ from the reference"
        assert all(list(own[k].shape) == ref_params[k] for k in ref_params)
        cfg = I.identity_config(sd)
        assert cfg["widths"] == [64, 128, 256, 512] and cfg["embed_dim"] == 512, cfg
        assert cfg["num_layers"] == 50 and cfg["mode"] == "ir_se" and cfg["input_size"] == 112, cfg
        # Randomised away from the defaults, as the docstring promises.
        assert not torch.allclose(sd["input_layer.2.weight"], torch.full([64], 0.25))
        assert not torch.allclose(sd["body.5.res_layer.4.running_var"], torch.ones(128))
        assert not torch.allclose(sd["output_layer.4.weight"], torch.ones(512))
        return f"{len(sd)} tensors, {n} elements"

    @check("narrow.pth exports and reproduces narrow_expected.pt to 1e-4")
    def _():
        out = os.path.join(tmp.name, "narrow")
        man = I.export_identity(os.path.join(ARC_DIR, "narrow.pth"), out)
        assert man["file"] == "identity.pt" and man["source"] == "narrow.pth", man
        assert man["config"]["widths"] == [16, 32, 64, 128] and man["config"]["embed_dim"] == 64, man
        assert man["config"]["num_layers"] == 50 and man["config"]["mode"] == "ir_se", man
        assert "35:223" in man["input"] and "32:220" in man["input"], man
        assert os.listdir(out) == ["identity.pt"], os.listdir(out)   # no temp file left
        m = torch.jit.load(os.path.join(out, "identity.pt"))
        with torch.no_grad():
            got = {"features_112": m.embed(exp["input_112"])}
            for size in (256, 1024):
                img = F.interpolate(exp[f"seed_{size}"], size=size, mode="bilinear", align_corners=False)
                got[f"id_features_{size}"] = m.embed(stylegan_preprocess(img))
        worst = 0.0
        for k, v in got.items():
            assert tuple(v.shape) == tuple(exp[k].shape), (k, v.shape, exp[k].shape)
            err = max_abs(v, exp[k])
            errors[k] = err
            worst = max(worst, err)
            assert err <= TOL, f"{k}: max abs error {err:.3g} > {TOL}"
        return f"max abs error {worst:.2g}"

    @check("exported model: batch sizes 1 and 2, forward == embed, train() changes nothing, "
           "wrong input shapes refused")
    def _():
        m = torch.jit.load(os.path.join(tmp.name, "narrow", "identity.pt"))
        x = exp["input_112"]
        with torch.no_grad():
            one = m.embed(x[1:2])
            assert max_abs(one, exp["features_112"][1:2]) <= TOL
            assert torch.equal(m(x), m.embed(x))
            assert m.embed_dim == 64 and m.input_size == 112
            m.train()   # batch norms keep their running statistics, there is no dropout
            assert max_abs(m.embed(x), exp["features_112"]) <= TOL
            m.eval()
            for bad in (torch.zeros(1, 3, 128, 128), torch.zeros(1, 1, 112, 112), torch.zeros(3, 112, 112)):
                try:
                    m.embed(bad)
                except (RuntimeError, torch.jit.Error) as e:  # jit.Error is not a RuntimeError here
                    assert "embed expects [B, 3, 112, 112]" in str(e), e
                else:
                    raise AssertionError(f"input of shape {list(bad.shape)} accepted")
        assert not any(p.requires_grad for p in m.parameters())
        # Gradients still reach the image (the ID loss needs them).
        img = exp["input_112"].clone().requires_grad_(True)
        (1 - (m.embed(img) * exp["features_112"]).sum(1)).mean().backward()
        assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
        return "ok"

    @check("random state dict of another width (divisor 16, embed 24), wrapped in "
           "{'state_dict': ...}, exports and runs at batch 1 and 3")
    def _():
        sd = I.random_identity_state_dict(seed=3, width_divisor=16, embed_dim=24)
        src = os.path.join(tmp.name, "random16.pth")
        torch.save({"state_dict": sd, "epoch": 7}, src)
        man = I.export_identity(src, os.path.join(tmp.name, "random16"))
        cfg = man["config"]
        assert cfg["widths"] == [4, 8, 16, 32] and cfg["embed_dim"] == 24, cfg
        m = torch.jit.load(os.path.join(tmp.name, "random16", "identity.pt"))
        eager = I.build_identity(sd)
        x = torch.rand(3, 3, 112, 112) * 2 - 1
        with torch.no_grad():
            for b in (1, 3):
                y = m.embed(x[:b])
                assert tuple(y.shape) == (b, 24), y.shape
                assert torch.isfinite(y).all()
                assert max_abs(y.norm(dim=1), torch.ones(b)) <= 1e-5
                assert max_abs(y, eager.embed(x[:b])) <= 1e-5
            y = m.embed(x)
            assert max_abs(y[0], y[1]) > 1e-3, "different images give the same features"
            # Batch entries are independent (eval-mode batch norm).
            assert max_abs(m.embed(x[2:3]), y[2:3]) <= 1e-5
        return "ok"

    @check("strict loading names missing and unexpected keys; bad shapes refused")
    def _():
        sd = I.random_identity_state_dict(seed=1, width_divisor=16, embed_dim=8)
        bad = dict(sd)
        del bad["body.4.res_layer.4.running_var"]
        bad["body.4.res_layer.9.weight"] = torch.zeros(1)
        msg = expect_value_error(lambda: I.build_identity(bad), "body.4.res_layer.4.running_var",
                                 "body.4.res_layer.9.weight")
        bad = dict(sd)
        bad["output_layer.3.weight"] = torch.zeros(8, 100)
        expect_value_error(lambda: I.build_identity(bad), "output_layer.3.weight")
        bad = {k: v for k, v in sd.items() if not k.startswith("body.23.")}
        expect_value_error(lambda: I.build_identity(bad), "units per group")
        return msg

    @check("non-ArcFace files raise ValueError naming the file")
    def _():
        cases = {}
        p = os.path.join(tmp.name, "generator.pt")
        torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(2)}, p)
        cases["generator.pt"] = p
        p = os.path.join(tmp.name, "notes.pth")
        with open(p, "w") as f:
            f.write("not a checkpoint\n")
        cases["notes.pth"] = p
        p = os.path.join(tmp.name, "linear_jit.pt")
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)
        cases["linear_jit.pt"] = p
        p = os.path.join(tmp.name, "tensor.pt")
        torch.save(torch.zeros(3), p)
        cases["tensor.pt"] = p
        p = os.path.join(tmp.name, "truncated_irse.pth")
        sd = I.random_identity_state_dict(seed=2, width_divisor=16, embed_dim=8)
        torch.save({k: v for k, v in sd.items() if not k.startswith("body.2")}, p)
        cases["truncated_irse.pth"] = p
        msgs = []
        for name, path in cases.items():
            msgs.append(expect_value_error(lambda: I.load_identity_state_dict(path), name))
            expect_value_error(lambda: I.export_identity(path, os.path.join(tmp.name, "never")), name)
        assert not os.path.exists(os.path.join(tmp.name, "never"))
        return "\n      " + "\n      ".join(msgs)

    tmp.cleanup()
    status = report()
    print("max abs errors vs narrow_expected.pt:")
    for k, v in errors.items():
        print(f"  {k:18s} {v:.3g}")
    print(f"{sum(ok for _, ok, _ in results)}/{len(results)} checks passed")
    return status


if __name__ == "__main__":
    sys.exit(main())
