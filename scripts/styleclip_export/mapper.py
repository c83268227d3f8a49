"""Import of StyleCLIP's published latent mappers into styleclip's mapper file format.

StyleCLIP's mapper training (`mapper/training/coach.py`) saves
  {"state_dict": {"mapper.<group>.mapping.<1..4>.{weight,bias}": ..., "decoder.…": ...},
   "opts": {...training options...}}
where <group> is `course_mapping` (sic), `medium_mapping` or `fine_mapping` (only the groups trained;
`--no_fine_mapper` drops the last). The decoder is a copy of the generator and is ignored here.

The output is the dict that `save_mapper` in src/engines/mapper.cpp writes and `load_mapper` reads:
  {"format": "styleclip-mapper", "version": 1, "num_ws": int, "w_dim": int,
   "groups": [names], "pixel_norm": "rows", "strength": 0.1,
   "state_dict": {"course_mapping.mapping.1.weight": tensor, ...}, "meta": JSON string,
   "generator_family": "stylegan2"}
Parameter names are the checkpoint's without `mapper.`. PixelNorm is "rows": the reference's mappers
normalise over the W+ rows of each group and only work that way (docs/algorithms.md §2.1).

Command line (the same as import_mapper):
  /usr/bin/python3 scripts/styleclip_export/mapper.py mohawk.pt mohawk.mapper.pt [--num-ws 18]
"""

import argparse
import hashlib
import json
import math
import os
import sys

import torch

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from styleclip_export import safe_pickle  # noqa: E402
from styleclip_export.atomic import torch_save_atomic  # noqa: E402

FORMAT = "styleclip-mapper"
VERSION = 1
GROUPS = ("coarse", "medium", "fine")
MODULES = {"coarse": "course_mapping", "medium": "medium_mapping", "fine": "fine_mapping"}
LAYERS = 4
GROUP_BEGIN = {"coarse": 0, "medium": 4, "fine": 8}


def num_ws_for(resolution):
    """W+ rows of a rosinality generator of this resolution (18 for 1024 px)."""
    return 2 * int(math.log2(resolution)) - 2


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def import_mapper(ckpt_path, out_path, num_ws=None):
    """Converts a StyleCLIP mapper checkpoint; raises ValueError naming the file on any problem.

    `num_ws` (the generator's W+ rows) defaults to what the checkpoint's opts.stylegan_size implies
    (the reference's default 1024 px: 18). Returns a summary dict.
    """
    try:
        ckpt = safe_pickle.torch_load(ckpt_path)
    except Exception as e:  # noqa: BLE001 - a refusal or any unpickling failure: one line
        raise ValueError(f"cannot read mapper checkpoint '{ckpt_path}': {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"'{ckpt_path}' is not a StyleCLIP mapper checkpoint: expected a dict with 'state_dict'")
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, dict):
        opts = vars(opts)
    if opts.get("work_in_stylespace"):
        raise ValueError(f"'{ckpt_path}' is a style-space mapper (work_in_stylespace): only W+ LevelsMapper "
                         "checkpoints are supported")
    if opts.get("mapper_type", "LevelsMapper") != "LevelsMapper":
        raise ValueError(f"'{ckpt_path}' is a {opts['mapper_type']}: only LevelsMapper checkpoints are supported")
    sd = {k[len("mapper."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("mapper.")}
    if not sd:
        raise ValueError(f"'{ckpt_path}' has no 'mapper.*' tensors")

    groups = [g for g in GROUPS if any(k.startswith(MODULES[g] + ".") for k in sd)]
    expected = [f"{MODULES[g]}.mapping.{i}.{p}" for g in groups for i in range(1, LAYERS + 1)
                for p in ("weight", "bias")]
    unexpected = sorted(set(sd) - set(expected))
    if unexpected:
        raise ValueError(f"'{ckpt_path}': unexpected mapper tensor 'mapper.{unexpected[0]}' "
                         "(not a LevelsMapper with 4 layers per group)")
    missing = [k for k in expected if k not in sd]
    if missing:
        raise ValueError(f"'{ckpt_path}': mapper tensor 'mapper.{missing[0]}' is missing")
    w_dim = sd[expected[0]].shape[1]
    for k in expected:
        want = (w_dim, w_dim) if k.endswith("weight") else (w_dim,)
        if tuple(sd[k].shape) != want:
            raise ValueError(f"'{ckpt_path}': 'mapper.{k}' has shape {list(sd[k].shape)}, expected {list(want)}")

    if num_ws is None:
        num_ws = num_ws_for(int(opts.get("stylegan_size", 1024)))
    for g in groups:
        if GROUP_BEGIN[g] >= num_ws:
            raise ValueError(f"'{ckpt_path}' has a {g} mapper, but a generator with {num_ws} W+ rows has no "
                             f"rows from {GROUP_BEGIN[g]} on")

    meta = {
        "imported_from": os.path.basename(ckpt_path),
        "source_sha256": _sha256(ckpt_path),
        "prompt": opts.get("description"),
        "source_opts": {k: _jsonable(v) for k, v in opts.items()},
    }
    out = {
        "format": FORMAT,
        "version": VERSION,
        "num_ws": int(num_ws),
        "w_dim": int(w_dim),
        "groups": list(groups),
        "pixel_norm": "rows",
        "strength": 0.1,
        "state_dict": {k: sd[k].detach().to(torch.float32).contiguous().clone() for k in expected},
        "meta": json.dumps(meta),
        # StyleCLIP's mappers are for StyleGAN2 generators (the C++ reader refuses them on others).
        "generator_family": "stylegan2",
    }
    try:
        torch_save_atomic(out, out_path)  # removes its temporary file when it fails
    except (OSError, RuntimeError) as e:  # torch.save reports a missing folder as RuntimeError
        raise ValueError(f"cannot write '{out_path}': {getattr(e, 'strerror', None) or e}") from None
    return {"file": str(out_path), "groups": groups, "num_ws": int(num_ws), "w_dim": int(w_dim),
            "prompt": meta["prompt"]}


def random_mapper_checkpoint(w_dim=512, groups=("coarse", "medium"), stylegan_size=1024, seed=0,
                             bias_std=0.5, description="random mapper"):
    """A random-weight checkpoint in StyleCLIP's published layout (for tests).

    Weights are randn / lr_mul as the reference initialises them; biases are random too (the
    reference starts them at 0) so that they matter. A one-tensor `decoder.*` stands in for the
    generator copy that real checkpoints carry.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for g in groups:
        for i in range(1, LAYERS + 1):
            prefix = f"mapper.{MODULES[g]}.mapping.{i}"
            sd[prefix + ".weight"] = torch.randn(w_dim, w_dim, generator=gen) / 0.01
            sd[prefix + ".bias"] = torch.randn(w_dim, generator=gen) * bias_std
    sd["decoder.input.input"] = torch.randn(1, 8, 4, 4, generator=gen)
    opts = {"no_coarse_mapper": "coarse" not in groups, "no_medium_mapper": "medium" not in groups,
            "no_fine_mapper": "fine" not in groups, "mapper_type": "LevelsMapper",
            "description": description, "stylegan_size": stylegan_size}
    return {"state_dict": sd, "opts": opts}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="StyleCLIP mapper checkpoint (e.g. mohawk.pt)")
    p.add_argument("out", help="mapper file to write")
    p.add_argument("--num-ws", type=int, default=None,
                   help="W+ rows of the generator (default: from the checkpoint's stylegan_size, else 18)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        print(f"mapper: cannot read checkpoint '{args.checkpoint}': file does not exist", file=sys.stderr)
        return 2
    try:
        s = import_mapper(args.checkpoint, args.out, args.num_ws)
    except ValueError as e:
        print(f"mapper: {e}", file=sys.stderr)
        return 2
    print(f"mapper: {'/'.join(s['groups'])} groups, {s['num_ws']} W+ rows of width {s['w_dim']}"
          f"{' for ' + repr(s['prompt']) if s['prompt'] else ''} -> {s['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
