"""Reading checkpoints without running the code they carry.

A pickle names Python callables (`module.name`) and the unpickler calls them; an ordinary
`pickle.load` or `torch.load(weights_only=False)` therefore runs whatever a downloaded file asks
for. NVIDIA's network pickles go further: each network is saved by their `persistence` module
together with its Python source, and loading it the ordinary way `exec`s that source.

This module's unpickler resolves only the names on an allow-list, each to a function or class
of this module or of PyTorch that builds data and nothing else:

* tensors and parameters: PyTorch's tensor rebuild functions (both generations: 2017-era files
  use `_rebuild_tensor`), `torch.Size`, dtypes, and storages (tensors inside a plain pickle)
  through PyTorch's own weights-only loader;
* plain containers (`collections.OrderedDict`, `builtins.set`, which protocol 2/3 pickles name
  for sets) and bytes (`_codecs.encode`, which protocol 2 pickles name for them; Latin-1 only);
* NumPy arrays, scalars and dtypes, rebuilt here rather than by NumPy, and only of plain
  numeric, bool and string dtypes: a pickled dtype's state can claim to hold no Python objects
  while declaring an object field, and NumPy would then read raw bytes as object pointers;
* NVIDIA's persistent objects: `torch_utils.persistence._reconstruct_persistent_obj` becomes
  `PersistentModule`, a tree of the module's recorded parameters, buffers, sub-modules,
  attributes and init arguments. The embedded source is never executed (only its length is
  kept);
* option records some published checkpoints carry (`argparse.Namespace`,
  `dnnlib.util.EasyDict`), rebuilt as plain attribute/dict containers of this module.

Any other name stops the load with `UnsafePickleError` naming it (`module.name`). `torch_load`
also refuses TorchScript archives, which `torch.load` would otherwise hand to `torch.jit.load`:
they are programs, and the callers that accept them load them explicitly.
"""

import _compat_pickle
import collections
import io
import pickle
import types
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch


class UnsafePickleError(Exception):
    """The file names a Python global that this loader will not run (or is a program)."""

    def __init__(self, qualname: str, what: Optional[str] = None):
        what = what or f"it asks to run {qualname}, which is not a tensor or plain data"
        super().__init__(f"{what} (refused: nothing from the file was executed)")
        self.qualname = qualname


class PersistentModule:
    """A network from an NVIDIA pickle, rebuilt as data: never an nn.Module, never executed.

    `class_name` is the recorded class (e.g. 'training.networks.SynthesisBlock'); `attrs` the
    instance attributes that are not PyTorch bookkeeping (resolution, architecture, ...);
    `init_args`/`init_kwargs` the constructor arguments the persistence module records.
    """

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(
                meta.get("state"), dict):
            raise ValueError("a persistent object that is not a recorded class instance")
        state = meta["state"]
        self.class_name: str = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.module_src_bytes = len(meta.get("module_src") or "")
        self.parameters: Dict[str, torch.Tensor] = _tensors(state.get("_parameters"))
        self.buffers: Dict[str, torch.Tensor] = _tensors(state.get("_buffers"))
        self.children: Dict[str, "PersistentModule"] = collections.OrderedDict()
        for name, child in (state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentModule):
                raise ValueError(f"sub-module '{name}' of {self.class_name} is a "
                                 f"{type(child).__name__}, not a recorded module")
            self.children[name] = child
        self.init_args = tuple(state.get("_init_args") or ())
        self.init_kwargs = dict(state.get("_init_kwargs") or {})
        self.attrs = {k: v for k, v in state.items() if not k.startswith("_") and k != "training"}

    @property
    def short_name(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    def child(self, path: str) -> "PersistentModule":
        node = self
        for part in path.split("."):
            if part not in node.children:
                raise KeyError(f"{self.short_name} has no sub-module '{path}'")
            node = node.children[part]
        return node

    def named_tensors(self, prefix: str = "") -> Iterator[Tuple[str, torch.Tensor]]:
        """Every parameter and buffer, named as `state_dict()` would name them."""
        for name, t in self.parameters.items():
            yield prefix + name, t
        for name, t in self.buffers.items():
            yield prefix + name, t
        for name, child in self.children.items():
            yield from child.named_tensors(prefix + name + ".")

    def state_dict(self) -> "collections.OrderedDict[str, torch.Tensor]":
        return collections.OrderedDict(self.named_tensors())

    def __repr__(self) -> str:
        return f"PersistentModule({self.class_name}, {len(self.children)} children)"


def _tensors(d) -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = collections.OrderedDict()
    for name, t in (d or {}).items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"parameter or buffer '{name}' is a {type(t).__name__}, not a tensor")
        out[name] = t.detach()
    return out


class Namespace(types.SimpleNamespace):
    """Stands in for argparse.Namespace: attributes (`opts.x`, `'x' in opts`, `vars(opts)`),
    no behaviour."""

    def __contains__(self, key) -> bool:
        return key in self.__dict__


class EasyDict(dict):
    """Stands in for NVIDIA's dnnlib.util.EasyDict: a dict whose keys also read as attributes.
    Names starting with '_' are never looked up in the data, so that a key such as
    '__setstate__' cannot pose as a method."""

    def __getattr__(self, name):
        if name.startswith("_") or name not in self:
            raise AttributeError(name)
        return self[name]


def _storage_from_bytes(data: bytes):
    # A storage inside a plain pickle is itself a legacy torch.save stream; open it with
    # PyTorch's weights-only unpickler, never the ordinary one.
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("a storage record that is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _latin1_bytes(text, encoding="latin1"):
    # Protocol 2 has no bytes opcode: Python 3 writes bytes as _codecs.encode(text, 'latin1').
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise ValueError("a bytes record that is not Latin-1 text")
    return text.encode("latin1")


def _raw_bytes(data) -> bytes:
    # Array and scalar data: bytes, or Python 2 strings that `encoding='latin1'` made str.
    if isinstance(data, str):
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise ValueError("a NumPy record without raw data")


# Kinds of NumPy dtype rebuilt: bool, integers, floats, complex, bytes and unicode strings.
_PLAIN_KINDS = "biufcSU"


class _SafeDtype:
    """Receives a pickled `numpy.dtype(spec, align, copy)` and its state, and keeps only what a
    plain dtype needs (kind, size, byte order); becomes a real dtype in `_realise`. NumPy's own
    `dtype.__setstate__` would trust the state's fields and flags (see the module docstring)."""

    def __init__(self, spec, align=False, copy=True):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str):
            raise ValueError("a NumPy dtype that is not named by a type code")
        try:
            self.dtype = np.dtype(spec)
        except TypeError:
            raise ValueError(f"a NumPy dtype '{spec}' that is not understood") from None
        if self.dtype.kind not in _PLAIN_KINDS or self.dtype.fields or self.dtype.subdtype:
            raise ValueError(f"a NumPy dtype '{spec}' that is not a plain number or string type")

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, item size, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 6 or any(s is not None for s in state[2:5]):
            raise ValueError("a NumPy dtype with fields or sub-arrays")
        order, itemsize = state[1], state[5]
        if self.dtype.kind in "SU" and isinstance(itemsize, int) and itemsize > 0:
            self.dtype = np.dtype(f"{self.dtype.kind}{itemsize // (4 if self.dtype.kind == 'U' else 1)}")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _dtype(d) -> np.dtype:
    if not isinstance(d, _SafeDtype):
        raise ValueError("a NumPy record whose dtype is not a pickled dtype")
    return d.dtype


def _numpy_scalar(dtype, data=None):
    dtype = _dtype(dtype)
    if data is None:
        return np.zeros((), dtype=dtype)[()]
    return np.frombuffer(_raw_bytes(data), dtype=dtype, count=1)[0]


class _NdarrayClass:
    """What the name `numpy.ndarray` resolves to: only an argument of `_reconstruct`, so that a
    file cannot call the real constructor (and reach object arrays) directly."""


_NDARRAY = _NdarrayClass()


def _numpy_reconstruct(cls, shape=None, dtype=None):
    if cls is not _NDARRAY:
        raise ValueError("a NumPy array of a subclass")
    return _SafeArray()


class _SafeArray:
    """Receives an ndarray's pickled state and becomes a real array in `_realise`."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("a NumPy array record of unknown layout")
        shape, dtype, fortran, data = state[-4:]  # the 5-tuple starts with a version number
        dtype = _dtype(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError("a NumPy array record with a bad shape")
        flat = np.frombuffer(_raw_bytes(data), dtype=dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct_persistent_obj(meta):
    return PersistentModule(meta)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("_codecs", "encode"): _latin1_bytes,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("numpy", "dtype"): _SafeDtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("argparse", "Namespace"): Namespace,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
}
# torch.float32 and friends appear as `torch.<dtype>` in some checkpoints.
for _dt in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
            "uint8", "bool"):
    _ALLOWED[("torch", _dt)] = getattr(torch, _dt)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the allow-listed names (see the module docstring)."""

    def find_class(self, module: str, name: str):
        # Pickles of protocol < 3 spell names the Python 2 way (`__builtin__.set`, `copy_reg`):
        # translate them as pickle itself does, so that they are allowed and refused by one name.
        module, name = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(f"{module}.{name}")
        return found

    def load(self):
        return _realise(super().load())


def _realise(root):
    """Replaces the NumPy placeholders (`_SafeArray`, `_SafeDtype`) by arrays and dtypes, in
    every container a loaded value can hold them in. Lists and dicts are changed in place, so
    shared and cyclic structures stay shared; each container is visited once."""
    # id -> (original, replacement): holding the original keeps its id from being reused.
    seen: Dict[int, tuple] = {}

    def fix(obj):
        if isinstance(obj, _SafeArray):
            if obj.array is None:
                raise ValueError("a NumPy array record without its data")
            return obj.array
        if isinstance(obj, _SafeDtype):
            return obj.dtype
        if not isinstance(obj, (list, tuple, dict, Namespace, PersistentModule)):
            return obj
        if id(obj) in seen:
            return seen[id(obj)][1]
        seen[id(obj)] = (obj, obj)
        if isinstance(obj, list):
            obj[:] = [fix(v) for v in obj]
        elif isinstance(obj, tuple):
            if type(obj) is tuple:  # torch.Size, the other tuple type allowed, holds ints
                seen[id(obj)] = (obj, tuple(fix(v) for v in obj))
        elif isinstance(obj, dict):
            for k in list(obj.keys()):
                obj[k] = fix(obj[k])
        elif isinstance(obj, Namespace):
            fix(vars(obj))
        else:  # PersistentModule
            obj.attrs = fix(obj.attrs)
            obj.init_args = fix(obj.init_args)
            obj.init_kwargs = fix(obj.init_kwargs)
            for child in obj.children.values():
                fix(child)
        return seen[id(obj)][1]

    return fix(root)


def load_pickle(path: str, encoding: str = "ASCII"):
    """A plain pickle file (e.g. NVIDIA's network pickles), read with the restricted unpickler."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding=encoding).load()


# A stand-in for the `pickle` module, for PyTorch's readers of the two torch.save formats: they
# subclass `Unpickler` (adding only storage types, which are data) and call `load` for the
# legacy format's header records.
_pickle_module = types.ModuleType("styleclip_restricted_pickle")
_pickle_module.Unpickler = RestrictedUnpickler
_pickle_module.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()


def torch_load(path, map_location: Optional[str] = "cpu"):
    """torch.load through the restricted unpickler: tensors, plain containers and the option
    records listed above; any other global, or a TorchScript archive, raises UnsafePickleError.

    This is torch.load's own dispatch between its readers, called with the restricted
    unpickler: torch.load itself cannot be trusted to use the `pickle_module` it is given
    (Debian's PyTorch 1.13 replaces it with `pickle` whenever weights_only is False), and it
    hands TorchScript archives to torch.jit.load. Should these private readers be renamed in a
    later PyTorch, loading fails (AttributeError) rather than falling back to pickle."""
    from torch import serialization

    with open(path, "rb") as f:
        if serialization._is_zipfile(f):
            with serialization._open_zipfile_reader(f) as archive:
                if serialization._is_torchscript_zip(archive):
                    raise UnsafePickleError("torch.jit.load", "it is a TorchScript archive, a "
                                            "program that torch.load would run, not a checkpoint")
                return serialization._load(archive, map_location, _pickle_module, encoding="utf-8")
        return serialization._legacy_load(f, map_location, _pickle_module, encoding="utf-8")


# torch.save's legacy (pre-zip) format is a pickle too; it starts with this magic number record
# (after a PROTO opcode, and a FRAME one when saved with pickle protocol 4 or 5).
_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def is_network_pickle(path: str) -> bool:
    """Whether `path` is a plain pickle (NVIDIA's format) rather than a torch.save file (zip or
    legacy) or a TorchScript archive: told from the file's first bytes, not its name."""
    with open(path, "rb") as f:
        head = f.read(32)
    return (len(head) >= 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5)
            and _TORCH_LEGACY_MAGIC not in head)
