#!/usr/bin/env python3
"""Checks that the exporters read every file without running code it carries
(scripts/styleclip_export/safe_pickle.py and each exporter's use of it).

Run from the repository root:  /usr/bin/python3 tests/python/test_safe_load.py
It needs only the repository.

* Hostile files: for each kind of file the exporters open (rosinality generator, NVIDIA network
  pickle, CLIP state dict, e4e encoder, StyleCLIP mapper, ArcFace identity, LPIPS and VGG16
  weights, S_mean_std), a plausible checkpoint with one value whose unpickling would create a
  marker file (through os.system, exec or subprocess.call), in torch.save's zip and legacy
  formats, is given to export_bundle.py. It must exit non-zero with one line naming the file and
  the refused `module.name`; the marker must not exist; nothing in the bundle may change.
  A first check proves each payload does create its marker under an ordinary unpickler.
* TorchScript archives where a checkpoint is expected are refused, not run (a scripted
  `__setstate__` that prints stays silent); a NumPy dtype forged to read raw bytes as object
  pointers, object arrays and direct ndarray construction are refused.
* NVIDIA-style pickles come back as a tree with their tensors while a stand-in of NVIDIA's
  persistence module, which would exec the recorded source, is importable: the source is not run.
* What the published files hold still loads: options as argparse.Namespace, Python 2-era
  S_mean_std pickles (protocols 0 and 2), Python 3 protocol-2 bytes, 2017-era tensors
  (`_rebuild_tensor`), protocol-3 sets, NumPy scalars.
"""

import builtins
import codecs
import contextlib
import io
import os
import pickle
import shlex
import struct
import subprocess
import sys
import tempfile
import types
from argparse import Namespace
from collections import OrderedDict
from typing import Tuple

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from styleclip_export import encoder, global_stats, mapper, safe_pickle  # noqa: E402
from checks import check, report  # noqa: E402

EXPORT = os.path.join(ROOT, "scripts", "export_bundle.py")
FORMATS = ("zip", "legacy")


# ---- hostile payloads ------------------------------------------------------------------------

class Payload:
    """Unpickles as a call that creates `marker`: what a hostile checkpoint carries."""

    REFUSED = {"system": f"{os.system.__module__}.system", "exec": "builtins.exec",
               "subprocess": "subprocess.call"}

    def __init__(self, kind, marker):
        self.kind, self.marker = kind, marker

    @property
    def refused(self):
        return self.REFUSED[self.kind]

    def __reduce__(self):
        if self.kind == "system":
            return (os.system, (f"touch {shlex.quote(self.marker)}",))
        if self.kind == "exec":
            return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))
        return (subprocess.call, (["touch", self.marker],))


def torch_save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def snapshot(folder):
    """{name: bytes} of a folder ({} when it does not exist): what a refused export must keep."""
    if not os.path.isdir(folder):
        return {}
    out = {}
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        out[name] = open(p, "rb").read() if os.path.isfile(p) else "<dir>"
    return out


def export(*args):
    return subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True, timeout=300)


def expect_refused(run, path, refused, marker, folder, before):
    """Non-zero exit; one error line naming the file and what was refused; no marker; the
    bundle folder as it was."""
    lines = [l for l in run.stderr.splitlines() if l.startswith("export_bundle:")]
    assert run.returncode != 0, f"exit 0 for {path}: {run.stdout}"
    assert "Traceback" not in run.stderr and len(lines) == 1, run.stderr
    line = lines[0]
    assert os.path.basename(path) in line and refused in line, line
    assert "nothing from the file was executed" in line, line
    assert not os.path.exists(marker), f"{marker} was created: the payload ran"
    after = snapshot(folder)
    assert after == before, f"the bundle changed: {sorted(before)} -> {sorted(after)}"
    return line


_bundle_cache = {}


def generator_bundle(dest):
    """A copy of a tiny random bundle (parts that need a generator are exported into one)."""
    if "dir" not in _bundle_cache:
        d = tempfile.mkdtemp(prefix="safe_load_bundle_")
        r = export("--random", "--resolution", "16", "--w-dim", "16", "--n-mlp", "2",
                   "--channel-divisor", "64", "--out", d)
        assert r.returncode == 0, r.stderr
        _bundle_cache["dir"] = d
    os.makedirs(dest)
    for name, data in snapshot(_bundle_cache["dir"]).items():
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)
    return dest


def hostile_cases(tmp, make, args, needs_generator=False, kinds=("system", "exec")):
    """Runs export_bundle on `make(payload)` saved in each format; `args(path, out)` gives the
    command line. Returns the error lines."""
    lines = []
    for fmt, kind in zip(FORMATS, kinds):
        case = os.path.join(tmp, f"{fmt}-{kind}")
        os.makedirs(case)
        marker = os.path.join(case, "MARKER")
        payload = Payload(kind, marker)
        path = torch_save(make(payload), os.path.join(case, f"evil-{fmt}.pt"), fmt)
        out = os.path.join(case, "bundle")
        if needs_generator:
            generator_bundle(out)
        before = snapshot(out)
        lines.append(expect_refused(export(*args(path, out)), path, payload.refused, marker, out, before))
    return lines


def t(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@check("each payload creates its marker under an ordinary unpickler (the hostile files are real)")
def payloads_run():
    with tempfile.TemporaryDirectory() as tmp:
        for kind in Payload.REFUSED:
            marker = os.path.join(tmp, kind)
            pickle.loads(pickle.dumps({"state_dict": {"w": Payload(kind, marker)}}))
            assert os.path.exists(marker), kind
    return ", ".join(Payload.REFUSED.values())


# ---- one hostile file per exporter -----------------------------------------------------------

@check("--stylegan: a hostile rosinality checkpoint is refused by name, nothing written")
def hostile_rosinality():
    with tempfile.TemporaryDirectory() as tmp:
        return hostile_cases(tmp, lambda p: {"g_ema": {"style.1.weight": t(4, 4)}, "latent_avg": t(4),
                                             "args": p},
                             lambda path, out: ["--stylegan", path, "--out", out])[0]


@check("--clip: a hostile state dict is refused by name, nothing written")
def hostile_clip():
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.txt.gz")
        open(vocab, "wb").close()
        return hostile_cases(tmp, lambda p: OrderedDict([("positional_embedding", t(4, 8)),
                                                         ("text_projection", p)]),
                             lambda path, out: ["--clip", path, "--vocab", vocab, "--out", out],
                             kinds=("subprocess", "system"))[0]


@check("--identity: a hostile ArcFace state dict is refused by name, nothing written")
def hostile_identity():
    with tempfile.TemporaryDirectory() as tmp:
        return hostile_cases(tmp, lambda p: OrderedDict([("input_layer.0.weight", t(4, 3, 3, 3)),
                                                         ("body.0.res_layer.0.weight", p)]),
                             lambda path, out: ["--identity", path, "--out", out],
                             kinds=("exec", "subprocess"))[0]


@check("--encoder: a hostile e4e checkpoint (in its opts) is refused by name, bundle unchanged")
def hostile_encoder():
    with tempfile.TemporaryDirectory() as tmp:
        return hostile_cases(tmp, lambda p: {"state_dict": {"encoder.input_layer.0.weight": t(4, 3, 3, 3),
                                                            "decoder.style.1.weight": t(4, 4)},
                                             "latent_avg": t(6, 16), "opts": p},
                             lambda path, out: ["--encoder", path, "--out", out], needs_generator=True)[0]


@check("--mapper: a hostile StyleCLIP mapper checkpoint is refused by name, no mapper written")
def hostile_mapper():
    def make(p):
        ckpt = mapper.random_mapper_checkpoint(w_dim=8)
        ckpt["opts"]["description"] = p
        return ckpt
    with tempfile.TemporaryDirectory() as tmp:
        return hostile_cases(tmp, make, lambda path, out: ["--mapper", path, "--out",
                                                           os.path.join(out, "evil.mapper.pt")],
                             kinds=("subprocess", "exec"))[0]


@check("--lpips / --lpips-vgg: hostile linear layers and VGG16 weights are refused by name")
def hostile_lpips():
    with tempfile.TemporaryDirectory() as tmp:
        good = torch_save({f"lin{k}.model.1.weight": t(1, 4, 1, 1) for k in range(5)},
                          os.path.join(tmp, "lin.pth"), "zip")
        a = hostile_cases(os.path.join(tmp, "lin"), lambda p: {"lin0.model.1.weight": p},
                          lambda path, out: ["--lpips", path, "--out", out])
        b = hostile_cases(os.path.join(tmp, "vgg"),
                          lambda p: OrderedDict([("features.0.weight", t(4, 3, 3, 3)), ("features.0.bias", p)]),
                          lambda path, out: ["--lpips", good, "--lpips-vgg", path, "--out", out],
                          kinds=("subprocess", "system"))
        return f"{a[0]} / {b[1]}"


def s_mean_std_values(style_dims):
    g = np.random.default_rng(0)
    return ([g.standard_normal(c).astype(np.float32) for c in style_dims],
            [g.random(c).astype(np.float32) + 0.5 for c in style_dims])


def global_stats_inputs(bundle, tmp):
    """(fs3.npy path, style_dims) for the bundle's generator."""
    import json
    gen = json.load(open(os.path.join(bundle, "manifest.json")))["generator"]
    layers = global_stats.default_layers(gen["style_dims"], gen["style_is_rgb"])
    rows = sum(gen["style_dims"][l] for l in layers)
    fs3 = os.path.join(tmp, "fs3.npy")
    np.save(fs3, np.random.default_rng(1).standard_normal((rows, 8)).astype(np.float32))
    return fs3, gen["style_dims"]


@check("--s-mean-std: hostile S_mean_std pickles (Python 3 and Python 2 style) are refused by name")
def hostile_s_mean_std():
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for proto, kind in ((2, "system"), (0, "exec")):
            case = os.path.join(tmp, f"p{proto}")
            os.makedirs(case)
            out = generator_bundle(os.path.join(case, "bundle"))
            fs3, dims = global_stats_inputs(out, case)
            marker = os.path.join(case, "MARKER")
            means, stds = s_mean_std_values(dims)
            payload = Payload(kind, marker)
            path = os.path.join(case, "S_mean_std")
            with open(path, "wb") as f:
                pickle.dump([means, stds[:-1] + [payload]], f, protocol=proto)
            before = snapshot(out)
            r = export("--global-stats", fs3, "--s-mean-std", path, "--out", out)
            lines.append(expect_refused(r, path, payload.refused, marker, out, before))
    return lines[0]


# ---- NVIDIA network pickles ------------------------------------------------------------------

class _EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@contextlib.contextmanager
def nvidia_modules(marker_dir=None):
    """Stand-ins for NVIDIA's `torch_utils.persistence` and `dnnlib.util`, importable while the
    block runs: `pickle` needs them to write the names NVIDIA's pickles use, and
    `_reconstruct_persistent_obj` first execs the recorded source as NVIDIA's does, so that an
    unrestricted reader in this process would run it."""
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    pers = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):
        exec(meta["module_src"], {})  # noqa: S102 - what NVIDIA's loader does, and what must not happen
        return meta

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = _EasyDict
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": pers,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persistent:
    """A network as NVIDIA's persistence module pickles it: its source, class name and state."""

    def __init__(self, class_name, source, params=None, buffers=None, children=None, **attrs):
        self.meta = {"type": "class", "version": 6, "module_src": source, "class_name": class_name,
                     "state": {"training": False,
                               "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                                          for k, v in (params or {}).items()),
                               "_buffers": OrderedDict(buffers or {}),
                               "_non_persistent_buffers_set": set(),
                               "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(),
                               "_modules": OrderedDict(children or {}),
                               "_init_args": (), **attrs}}

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def network(source, extra_state=None):
    fc = Persistent("training.networks.FullyConnectedLayer", source,
                    params={"weight": t(8, 4, seed=1), "bias": t(8, seed=2)},
                    activation="lrelu", weight_gain=np.float64(0.5), bias_gain=1)
    mapping = Persistent("training.networks.MappingNetwork", source, buffers={"w_avg": t(8, seed=3)},
                         children={"fc0": fc}, w_avg_beta=0.995)
    g = Persistent("training.networks.Generator", source, children={"mapping": mapping},
                   _init_kwargs={"z_dim": 4, "mapping_kwargs": _EasyDict(num_layers=1)},
                   img_resolution=16, act_gain=np.sqrt(np.float64(2)),
                   block_resolutions=np.array([4, 8, 16]))
    g.meta["state"].update(extra_state or {})
    return g


def write_network_pickle(path, protocol, source, extra_state=None, top=None):
    with nvidia_modules():
        with open(path, "wb") as f:
            pickle.dump({"training_set_kwargs": top or {"resolution": 16},
                         "G_ema": network(source, extra_state), "augment_pipe": None}, f, protocol=protocol)
    return path


@check("load_pickle: an NVIDIA-style pickle (protocols 3 and 4) comes back as a tree with its "
       "tensors, and its recorded source is not run even where NVIDIA's loader is importable")
def nvidia_tree():
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "MARKER")
        source = f"import os\nos.system({('touch ' + shlex.quote(marker))!r})\n"
        for protocol in (3, 4):
            path = write_network_pickle(os.path.join(tmp, f"net{protocol}.pkl"), protocol, source)
            assert safe_pickle.is_network_pickle(path)
            with nvidia_modules():
                obj = safe_pickle.load_pickle(path)
            assert not os.path.exists(marker), "the recorded source ran"
            g = obj["G_ema"]
            assert isinstance(g, safe_pickle.PersistentModule) and g.class_name == "training.networks.Generator"
            assert g.module_src_bytes == len(source)
            sd = g.state_dict()
            assert list(sd) == ["mapping.w_avg", "mapping.fc0.weight", "mapping.fc0.bias"], list(sd)
            assert torch.equal(sd["mapping.fc0.weight"], t(8, 4, seed=1))
            assert torch.equal(g.child("mapping").buffers["w_avg"], t(8, seed=3))
            fc = g.child("mapping.fc0")
            assert fc.attrs["weight_gain"] == 0.5 and isinstance(fc.attrs["weight_gain"], np.floating)
            assert g.init_kwargs["mapping_kwargs"].num_layers == 1  # dnnlib's EasyDict, as attributes
            assert g.attrs["act_gain"] == np.sqrt(2.0)
            assert np.array_equal(g.attrs["block_resolutions"], [4, 8, 16])
            assert obj["training_set_kwargs"] == {"resolution": 16} and obj["augment_pipe"] is None
    return f"{len(sd)} tensors"


@check("load_pickle: a persistent object whose state calls os.system is refused by name")
def nvidia_hostile_state():
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "MARKER")
        path = write_network_pickle(os.path.join(tmp, "evil.pkl"), 4, "pass\n",
                                    extra_state={"_forward_pre_hooks": OrderedDict({0: Payload("system", marker)})})
        try:
            safe_pickle.load_pickle(path)
            raise AssertionError("loaded")
        except safe_pickle.UnsafePickleError as e:
            assert e.qualname == Payload.REFUSED["system"] and e.qualname in str(e), str(e)
            message = str(e)
        assert not os.path.exists(marker)
        return message


@check("--stylegan NVIDIA pickle: hostile values at the top and inside a network are refused by "
       "name, no generator.pt or manifest.json")
def hostile_nvidia_cli():
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for where, kind in (("top", "subprocess"), ("state", "system")):
            marker = os.path.join(tmp, f"MARKER-{where}")
            payload = Payload(kind, marker)
            path = os.path.join(tmp, f"evil-{where}.pkl")
            if where == "top":
                write_network_pickle(path, 3, "pass\n", top=payload)
            else:
                write_network_pickle(path, 4, "pass\n", extra_state={"_forward_hooks": OrderedDict({0: payload})})
            out = os.path.join(tmp, f"bundle-{where}")
            lines.append(expect_refused(export("--stylegan", path, "--out", out), path, payload.refused,
                                        marker, out, {}))
    return lines[0]


# ---- programs and forged records -------------------------------------------------------------

class _LoudOnLoad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.zeros(1)

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        print("TORCHSCRIPT-RAN")
        self.x = state[0]
        self.training = state[1]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t + self.x


@check("a TorchScript archive given as a mapper, generator or LPIPS checkpoint is refused, not run")
def torchscript_refused():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "program.pt")
        torch.jit.script(_LoudOnLoad()).save(path)
        lines = []
        for args in (["--mapper", path, "--out", os.path.join(tmp, "m", "x.mapper.pt")],
                     ["--stylegan", path, "--out", os.path.join(tmp, "g")],
                     ["--lpips", path, "--out", os.path.join(tmp, "l")]):
            r = export(*args)
            assert "TORCHSCRIPT-RAN" not in r.stdout + r.stderr, "the archive's code ran"
            folder = os.path.dirname(args[-1]) if args[0] == "--mapper" else args[-1]
            lines.append(expect_refused(r, path, "TorchScript archive", os.path.join(tmp, "none"), folder, {}))
        return lines[0]


def forged_dtype_pickle():
    """A structured array whose pickled dtype declares an object field but claims (flags 0) to
    hold no objects, with raw bytes as data: NumPy would read the bytes as object pointers."""
    real = np.dtype([("a", "f8"), ("b", "f8")])

    class Forger(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is real:
                fn, args, state = np.dtype([("a", "O"), ("b", "f8")]).__reduce__()
                return fn, args, state[:-1] + (0,)
            return NotImplemented

    buf = io.BytesIO()
    Forger(buf, protocol=2).dump([[np.frombuffer(b"\x41" * 32, dtype=real)], [np.ones(1, np.float32)]])
    return buf.getvalue()


@check("--s-mean-std: a forged NumPy dtype (object field, no-object flags) is refused, no crash")
def forged_dtype():
    with tempfile.TemporaryDirectory() as tmp:
        out = generator_bundle(os.path.join(tmp, "bundle"))
        fs3, _ = global_stats_inputs(out, tmp)
        path = os.path.join(tmp, "S_mean_std")
        with open(path, "wb") as f:
            f.write(forged_dtype_pickle())
        before = snapshot(out)
        r = export("--global-stats", fs3, "--s-mean-std", path, "--out", out)
        assert r.returncode not in (0, -11), (r.returncode, r.stderr)
        assert "not a plain number or string type" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert snapshot(out) == before
        return r.stderr.strip()


@check("object arrays and direct numpy.ndarray construction are refused")
def numpy_objects_refused():
    obj_array = pickle.dumps(np.array([1.5, "x"], dtype=object), protocol=2)
    direct = b"\x80\x02cnumpy\nndarray\nK\x03\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R\x86R."
    for data in (obj_array, direct):
        try:
            safe_pickle.RestrictedUnpickler(io.BytesIO(data)).load()
            raise AssertionError("loaded")
        except (ValueError, TypeError):
            pass


@check("is_network_pickle: NVIDIA pickles yes; torch.save zip and legacy files (protocols 2 and 4) no")
def format_detection():
    with tempfile.TemporaryDirectory() as tmp:
        nv = write_network_pickle(os.path.join(tmp, "n.pkl"), 4, "pass\n")
        assert safe_pickle.is_network_pickle(nv)
        for i, kw in enumerate(({}, {"_use_new_zipfile_serialization": False},
                                {"_use_new_zipfile_serialization": False, "pickle_protocol": 4})):
            p = os.path.join(tmp, f"{i}.pt")
            torch.save({"g_ema": {"w": t(2)}}, p, **kw)
            assert not safe_pickle.is_network_pickle(p), kw


# ---- what the published files hold still loads -----------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` records (STRING, SHORT_BINSTRING, BINSTRING), as the
    Python 2 NumPy of the reference's S_mean_std did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if self.proto == 0:
            self.write(b"S'" + codecs.escape_encode(data)[0] + b"'\n")
        elif len(data) < 256:
            self.write(b"U" + bytes([len(data)]) + data)
        else:
            self.write(b"T" + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


@check("S_mean_std: Python 2-era (protocols 0 and 2) and Python 3 (protocols 2, 3, 4) pickles import")
def s_mean_std_loads():
    dims = [5, 3, 260]
    means, stds = s_mean_std_values(dims)
    section = {"style_dims": dims, "style_is_rgb": [False, True, False]}
    writers = {"py2-p0": lambda f: Py2Pickler(f, protocol=0).dump([means, stds]),
               "py2-p2": lambda f: Py2Pickler(f, protocol=2).dump([means, stds])}
    for proto in (2, 3, 4):
        writers[f"py3-p{proto}"] = lambda f, proto=proto: pickle.dump([means, stds], f, protocol=proto)
    with tempfile.TemporaryDirectory() as tmp:
        fs3 = os.path.join(tmp, "fs3.npy")
        np.save(fs3, np.zeros((5 + 260, 4), np.float32))
        for name, write in writers.items():
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                write(f)
            global_stats.import_global_stats(fs3, path, section, tmp)
            got = torch.load(os.path.join(tmp, "global_stats.pt"))
            for l in range(3):
                assert np.array_equal(got["s_mean"][l].numpy(), means[l]), (name, l)
                assert np.array_equal(got["s_std"][l].numpy(), stds[l]), (name, l)
    return ", ".join(writers)


@check("options as argparse.Namespace: mapper (CLI), e4e and rosinality checkpoints load; opts.x works")
def namespace_options():
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = mapper.random_mapper_checkpoint(w_dim=8, description="a mohawk", stylegan_size=256)
        ckpt["opts"] = Namespace(**ckpt["opts"])
        src = torch_save(ckpt, os.path.join(tmp, "mohawk.pt"), "legacy")
        out = os.path.join(tmp, "mohawk.mapper.pt")
        r = export("--mapper", src, "--out", out)
        assert r.returncode == 0 and os.path.isfile(out), r.stderr
        written = torch.load(out)
        assert written["num_ws"] == 14 and "a mohawk" in written["meta"], written["meta"]

        e4e = encoder.random_encoder_checkpoint(6, 16, width_divisor=16)
        e4e["opts"] = Namespace(encoder_type="Encoder4Editing", start_from_latent_avg=True, lr=1e-4)
        sd, avg = encoder.load_encoder_checkpoint(torch_save(e4e, os.path.join(tmp, "e4e.pt"), "zip"))
        assert sd and avg.shape[-1] == 16

        ros = safe_pickle.torch_load(torch_save({"g_ema": {"w": t(2)}, "args": Namespace(size=256, n_mlp=8)},
                                                os.path.join(tmp, "ros.pt"), "zip"))
        args = ros["args"]
        assert args.size == 256 and "n_mlp" in args and vars(args) == {"size": 256, "n_mlp": 8}
    return r.stdout.strip()


@check("2017-era legacy tensors (torch._utils._rebuild_tensor, as torchvision's VGG16 file) load")
def legacy_v1_tensors():
    class V1Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is torch.Tensor:
                return (torch._utils._rebuild_tensor,
                        (obj.storage(), obj.storage_offset(), tuple(obj.size()), obj.stride()))
            return NotImplemented

    sd = OrderedDict([("features.0.weight", t(4, 3, 3, 3)), ("features.0.bias", t(6)[2:])])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vgg16-2017.pth")
        torch.save(sd, path, pickle_module=types.SimpleNamespace(Pickler=V1Pickler, dump=pickle.dump,
                                                                 __name__="pickle"),
                   _use_new_zipfile_serialization=False)
        assert b"_rebuild_tensor\n" in open(path, "rb").read()
        got = safe_pickle.torch_load(path)
        assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


if __name__ == "__main__":
    try:
        sys.exit(report())
    finally:
        if "dir" in _bundle_cache:
            import shutil
            shutil.rmtree(_bundle_cache["dir"], ignore_errors=True)
