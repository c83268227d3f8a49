#!/usr/bin/env python3
"""Checks docs/manifest.schema.json, the JSON Schema of a bundle's manifest.json, against what the
writers write and what the reader (src/models/bundle.cpp) refuses.

Run from the repository root:  /usr/bin/python3 tests/python/test_manifest_schema.py
It needs only the repository, and python3-jsonschema (Debian 12: 4.10); without it the check is
skipped (exit 0).

* The shipped demonstration bundle's manifest validates (its global_stats section is the one
  `styleclip global prepare` writes).
* Bundles exported here with scripts/export_bundle.py validate: a random rosinality generator with
  every other part (tiny CLIP, identity, e4e encoder, LPIPS, face detector, imported global
  directions), a rosinality checkpoint read from a file with LPIPS in its published two-file layout,
  and a conditional generator from an NVIDIA-layout network pickle (tests/python/nvidia_pickle.py).
  No temporary file is left in them and manifest.json is world-readable.
* The schema can fail: manifests with a required field missing, a wrong type, a value outside an
  enumeration or dimensions that do not fit together (each of which Bundle::open refuses), a
  malformed sha256 and a path leaving the bundle are rejected, each at the field concerned; keys
  the reader ignores are accepted.
* write_manifest writes through a temporary file (scripts/styleclip_export/atomic.py): a manifest
  that cannot be serialised, or a write that fails half-way, leaves the previous one and no
  temporary file.
"""

import copy
import json
import os
import pickle
import stat
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import jsonschema
except ImportError:
    print("SKIP: python3-jsonschema is not installed (apt-get install python3-jsonschema)")
    sys.exit(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import nvidia_pickle  # noqa: E402
from checks import check, report  # noqa: E402
from styleclip_export import atomic, bundle, global_stats, lpips, stylegan2  # noqa: E402

SCHEMA_PATH = os.path.join(ROOT, "docs", "manifest.schema.json")
DEMO = os.path.join(ROOT, "models", "demo")
EXPORT = os.path.join(ROOT, "scripts", "export_bundle.py")

tmp = tempfile.TemporaryDirectory(prefix="manifest_schema_test_")
bundles = {}  # name -> folder, filled by the export check


def validator():
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def errors(manifest):
    return sorted(validator().iter_errors(manifest), key=lambda e: list(e.absolute_path))


def assert_valid(manifest, what):
    errs = errors(manifest)
    assert not errs, f"{what}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errs)


def load(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        return json.load(f)


def export(*args):
    r = subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"export_bundle.py {' '.join(args)} exited {r.returncode}:\n{r.stderr}"


@check("the schema is a valid draft 2020-12 schema")
def schema_valid():
    v = validator()
    return type(v).__name__


@check("models/demo/manifest.json validates (with the global_stats section `global prepare` writes)")
def demo_valid():
    m = load(DEMO)
    assert_valid(m, "models/demo")
    assert "options" in m["global_stats"], "the demo bundle no longer has a computed global_stats section"
    return f"parts {sorted(m['files'])}"


@check("bundles exported here (every part; NVIDIA conditional; rosinality file + two-file LPIPS)")
def exports():
    work = tmp.name
    vocab = os.path.join(DEMO, "vocab.txt.gz")
    merges = str(load(DEMO)["clip"]["vocab_merges"])
    # A stand-in for YuNet: the exporter only copies it, after checking it starts as ONNX does.
    onnx = os.path.join(work, "detector.onnx")
    with open(onnx, "wb") as f:
        f.write(b"\x08\x07" + bytes(62))
    full = bundles["full"] = os.path.join(work, "full")
    export("--random", "--resolution", "16", "--w-dim", "16", "--n-mlp", "2", "--channel-divisor", "64",
           "--random-clip", "tiny", "--vocab", vocab, "--vocab-merges", merges,
           "--random-identity", "16", "--random-encoder", "16", "--random-lpips", "16",
           "--face-detector", onnx, "--out", full)
    # Global directions in the published files' layout, sized for this generator.
    gen = load(full)["generator"]
    layers = global_stats.default_layers(gen["style_dims"], gen["style_is_rgb"])
    fs3 = os.path.join(work, "fs3.npy")
    np.save(fs3, np.random.default_rng(0).standard_normal(
        (sum(gen["style_dims"][l] for l in layers), 8)).astype(np.float32))
    s_mean_std = os.path.join(work, "S_mean_std")
    with open(s_mean_std, "wb") as f:
        pickle.dump([[np.zeros(c, np.float32) for c in gen["style_dims"]],
                     [np.ones(c, np.float32) for c in gen["style_dims"]]], f, protocol=2)
    export("--global-stats", fs3, "--s-mean-std", s_mean_std, "--out", full)

    pkl = os.path.join(work, "cond.pkl")
    nvidia_pickle.write(pkl, resolution=16, c_dim=3, seed=7)
    bundles["nvidia_cond"] = os.path.join(work, "nvidia_cond")
    export("--stylegan", pkl, "--out", bundles["nvidia_cond"])

    ckpt = os.path.join(work, "rosinality16.pt")
    torch.save(stylegan2.random_checkpoint(16, 24, 3, channel_multiplier=1, channel_divisor=32, seed=3), ckpt)
    lin, vgg = lpips.random_lpips_files(work, 16, seed=1)
    bundles["rosinality"] = os.path.join(work, "rosinality")
    export("--stylegan", ckpt, "--lpips", lin, "--lpips-vgg", vgg, "--out", bundles["rosinality"])
    return ", ".join(f"{n}: {sorted(load(d)['files'])}" for n, d in bundles.items())


@check("each exported manifest validates; no temporary file is left; manifest.json is mode 0644")
def exported_valid():
    assert bundles, "nothing was exported"
    for name, folder in bundles.items():
        assert_valid(load(folder), name)
        names = set(os.listdir(folder))
        listed = {e["path"] for e in load(folder)["files"].values()}
        assert names == listed | {"manifest.json"}, f"{name}: unexpected files {sorted(names - listed)}"
        mode = stat.S_IMODE(os.stat(os.path.join(folder, "manifest.json")).st_mode)
        assert mode == 0o644, f"{name}/manifest.json has mode {oct(mode)}"
    m = load(bundles["nvidia_cond"])["generator"]
    assert m["seed_convention"] == "numpy-randomstate" and m["c_dim"] == 3, m
    assert isinstance(load(bundles["rosinality"])["lpips"]["source"], list)
    assert isinstance(load(bundles["full"])["lpips"]["source"], str)


def _del(*path):
    def f(m):
        for k in path[:-1]:
            m = m[k]
        del m[path[-1]]
    return f


def _set(value, *path):
    def f(m):
        for k in path[:-1]:
            m = m[k]
        m[path[-1]] = value
    return f


def _drop_layer(m):
    m["generator"]["style_dims"].pop()
    m["generator"]["style_is_rgb"].pop()


# (what, bundle, mutation, path at which an error must be reported). Bundle::open refuses the
# missing fields, the wrong types, a wrong format, format_version or seed_convention, and the
# dimensions that do not fit together as well. The rest is the writers' format, which the reader
# does not check: sections and keys it does not read, format_version 1.5 (its int conversion
# truncates it to 1), a sha256 spelt otherwise (only a mismatch when it hashes), paths leaving the
# bundle folder.
MUTATIONS = [
    ("missing format_version", "full", _del("format_version"), []),
    ("missing files", "full", _del("files"), []),
    ("files.generator without a generator section", "full", _del("generator"), []),
    ("files.clip without files.vocab", "full", _del("files", "vocab"), ["files"]),
    ("missing generator.num_ws", "full", _del("generator", "num_ws"), ["generator"]),
    ("missing generator.style_is_rgb", "nvidia_cond", _del("generator", "style_is_rgb"), ["generator"]),
    ("missing clip.config.vocab_size", "full", _del("clip", "config", "vocab_size"), ["clip", "config"]),
    ("missing clip.image_std", "full", _del("clip", "image_std"), ["clip"]),
    ("missing files.generator.sha256", "full", _del("files", "generator", "sha256"), ["files", "generator"]),
    ("generator.resolution as a string", "full", _set("16", "generator", "resolution"),
     ["generator", "resolution"]),
    ("format_version as a string", "full", _set("1", "format_version"), ["format_version"]),
    ("format_version 1.5", "full", _set(1.5, "format_version"), ["format_version"]),
    ("style_is_rgb as 0/1", "full", lambda m: m["generator"].update(
        style_is_rgb=[int(b) for b in m["generator"]["style_is_rgb"]]), ["generator", "style_is_rgb", 0]),
    ("files.clip.bytes as a string", "full", _set("708086", "files", "clip", "bytes"),
     ["files", "clip", "bytes"]),
    ("clip.image_mean with 4 values", "full", _set([0.5, 0.5, 0.5, 0.5], "clip", "image_mean"),
     ["clip", "image_mean"]),
    ("generator.w_dim 0", "full", _set(0, "generator", "w_dim"), ["generator", "w_dim"]),
    ("generator.c_dim -1", "nvidia_cond", _set(-1, "generator", "c_dim"), ["generator", "c_dim"]),
    ("clip.vocab_merges 0", "full", _set(0, "clip", "vocab_merges"), ["clip", "vocab_merges"]),
    ("format misspelt", "full", _set("styleclip-bundel", "format"), ["format"]),
    ("format_version 2", "full", _set(2, "format_version"), ["format_version"]),
    ("seed_convention 'numpy'", "nvidia_cond", _set("numpy", "generator", "seed_convention"),
     ["generator", "seed_convention"]),
    ("architecture 'stylegan3'", "full", _set("stylegan3", "generator", "architecture"),
     ["generator", "architecture"]),
    ("clip.source_kind 'onnx'", "full", _set("onnx", "clip", "source_kind"), ["clip", "source_kind"]),
    ("global_stats.options.precision 'fp64'", "demo", _set("fp64", "global_stats", "options", "precision"),
     ["global_stats", "options", "precision"]),
    ("num_ws not 2 log2(resolution) - 2", "full", _set(7, "generator", "num_ws"), ["generator", "num_ws"]),
    ("resolution not a power of two", "full", _set(24, "generator", "resolution"), ["generator", "resolution"]),
    ("one style layer too few", "nvidia_cond", _drop_layer, ["generator", "style_dims"]),
    ("ResNet CLIP with an integer vision_layers", "demo", _set(4, "clip", "config", "vision_layers"),
     ["clip", "config", "vision_layers"]),
    ("sha256 in capitals", "full", lambda m: m["files"]["generator"].update(
        sha256=m["files"]["generator"]["sha256"].upper()), ["files", "generator", "sha256"]),
    ("sha256 truncated", "full", lambda m: m["files"]["vocab"].update(
        sha256=m["files"]["vocab"]["sha256"][:12]), ["files", "vocab", "sha256"]),
    ("a path leaving the bundle", "full", _set("../generator.pt", "files", "generator", "path"),
     ["files", "generator", "path"]),
    ("an absolute path", "full", _set("/etc/passwd", "files", "generator", "path"),
     ["files", "generator", "path"]),
]


def base(name):
    return load(DEMO) if name == "demo" else load(bundles[name])


@check(f"{len(MUTATIONS)} mutated manifests are rejected at the field concerned")
def mutations():
    failures = []
    for what, name, mutate, at in MUTATIONS:
        m = copy.deepcopy(base(name))
        mutate(m)
        errs = errors(m)
        paths = [list(e.absolute_path) for e in errs]
        if not any(p[:len(at)] == at for p in paths):
            failures.append(f"{what}: expected an error at {at}, got {paths or 'none'}")
    assert not failures, "\n".join(failures)


@check("keys the reader ignores are accepted (top level, sections, file entries, new parts)")
def extra_keys():
    m = base("full")
    m["note"] = "made by hand"
    m["generator"]["training_kimg"] = 25000
    m["files"]["generator"]["note"] = "x"
    m["files"]["readme"] = bundle.file_entry(bundles["full"], "manifest.json")
    assert_valid(m, "with extra keys")


@check("write_manifest: mode 0644, no temporary file; a failed or half-done write keeps the old manifest")
def write_manifest_atomic():
    with tempfile.TemporaryDirectory() as d:
        bundle.write_manifest(d, {"files": {}})
        path = os.path.join(d, "manifest.json")
        assert os.listdir(d) == ["manifest.json"], os.listdir(d)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        before = open(path).read()
        assert_valid(json.loads(before), "an empty bundle")
        try:
            bundle.write_manifest(d, {"files": {}, "generator": object()})
            raise AssertionError("no error for a manifest that cannot be serialised")
        except TypeError:
            pass
        assert os.listdir(d) == ["manifest.json"], f"left behind: {os.listdir(d)}"
        assert open(path).read() == before

        def half_written(tmp_path):
            with open(tmp_path, "w") as f:
                f.write('{"format": ')
            raise OSError(28, "No space left on device")
        for unique in (True, False):  # the manifest's temporary name, and the models' (path.tmp)
            try:
                atomic.write_via_temp(path, half_written, unique_temp=unique)
                raise AssertionError("the writer's error was not raised")
            except OSError as e:
                assert e.errno == 28, e
            assert os.listdir(d) == ["manifest.json"], f"left behind: {os.listdir(d)}"
            assert open(path).read() == before


if __name__ == "__main__":
    status = report()
    tmp.cleanup()
    sys.exit(status)
