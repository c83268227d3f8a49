#!/usr/bin/env python3
"""Writes network pickles laid out as NVIDIA's stylegan2-ada-pytorch training loop writes them, with
random weights, so the exporter's NVIDIA path and every engine on an NVIDIA bundle can be tested
from this repository alone.

Usage: nvidia_pickle.py OUT.pkl [--resolution 32] [--c-dim 0] [--z-dim 24] [--w-dim 32]
                        [--conv-clamp 256] [--architecture skip] [--only D] [--seed 0]
                        [--channel-base 512] [--channel-max 32] [--mapping-layers 2]
(FFHQ 1024's sizes: --resolution 1024 --z-dim 512 --w-dim 512 --channel-base 32768
 --channel-max 512 --mapping-layers 8)

The layout (a dict `training_set_kwargs, G, D, G_ema, augment_pipe`; each network recorded by
NVIDIA's `persistence` module as `_reconstruct_persistent_obj(meta)` with its source text, class
name and `__dict__` state) follows the public description of their format (stylegan2-ada-pytorch
`torch_utils/persistence.py`, `training/networks.py`, `training/training_loop.py`). No NVIDIA code
is used, and the recorded "source" is a harmless string: whether a reader runs it is what the
safety tests check with the marker file it would create. The numbers are random, so agreement
with NVIDIA's own outputs is proven on the recorded reference pickles, not on these.
"""

import argparse
import math
import pickle
import sys
import types
from collections import OrderedDict

import torch


def _persistence_module():
    """A stand-in `torch_utils.persistence` so that `pickle` records the name NVIDIA's pickles
    use for each network; only the writer needs it."""
    if "torch_utils.persistence" in sys.modules:
        return sys.modules["torch_utils.persistence"]
    pkg = types.ModuleType("torch_utils")
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: readers must not run this name
        raise RuntimeError("only for writing")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    sys.modules["torch_utils"] = pkg
    sys.modules["torch_utils.persistence"] = mod
    return mod


class Net:
    """One recorded network: pickles as NVIDIA's persistent objects do."""

    def __init__(self, class_name, params=None, buffers=None, children=None, attrs=None,
                 init_kwargs=None, source="pass\n"):
        self.meta = {
            "type": "class",
            "version": 6,
            "module_src": source,
            "class_name": class_name,
            "state": {
                "training": False,
                "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                           for k, v in (params or {}).items()),
                "_buffers": OrderedDict(buffers or {}),
                "_non_persistent_buffers_set": set(),
                "_modules": OrderedDict(children or {}),
                "_init_args": (),
                "_init_kwargs": dict(init_kwargs or {}),
                **(attrs or {}),
            },
        }

    def __reduce__(self):
        return (_persistence_module()._reconstruct_persistent_obj, (self.meta,))


def _filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f[:, None] * f[None, :]
    return f / f.sum()


def _fc(gen, out_f, in_f, lr=1.0, act="lrelu", bias_init=0.0):
    return Net("training.networks.FullyConnectedLayer",
               params={"weight": torch.randn(out_f, in_f, generator=gen) / lr,
                       "bias": torch.full([out_f], float(bias_init)) + 0.1 * torch.randn(out_f, generator=gen)},
               attrs={"activation": act, "weight_gain": lr / math.sqrt(in_f), "bias_gain": lr})


def _layer(gen, cin, cout, w_dim, res, up, clamp):
    return Net("training.networks.SynthesisLayer",
               params={"weight": torch.randn(cout, cin, 3, 3, generator=gen),
                       "noise_strength": 0.3 * torch.randn([], generator=gen),
                       "bias": 0.2 * torch.randn(cout, generator=gen)},
               buffers={"resample_filter": _filter(), "noise_const": torch.randn(res, res, generator=gen)},
               children={"affine": _fc(gen, cin, w_dim, act="linear", bias_init=1.0)},
               attrs={"resolution": res, "up": up, "use_noise": True, "activation": "lrelu",
                      "conv_clamp": clamp, "padding": 1, "act_gain": math.sqrt(2)})


def _torgb(gen, cin, w_dim, clamp):
    return Net("training.networks.ToRGBLayer",
               params={"weight": torch.randn(3, cin, 1, 1, generator=gen),
                       "bias": 0.2 * torch.randn(3, generator=gen)},
               children={"affine": _fc(gen, cin, w_dim, act="linear", bias_init=1.0)},
               attrs={"conv_clamp": clamp, "weight_gain": 1 / math.sqrt(cin)})


def generator(resolution=32, z_dim=24, c_dim=0, w_dim=32, num_layers=2, channel_base=512,
              channel_max=32, conv_clamp=256, architecture="skip", seed=0, source="pass\n"):
    gen = torch.Generator().manual_seed(seed)
    res_log2 = int(math.log2(resolution))
    block_res = [2 ** i for i in range(2, res_log2 + 1)]
    ch = {r: min(channel_base // r, channel_max) for r in block_res}
    blocks = OrderedDict()
    num_ws = 0
    for r in block_res:
        children = OrderedDict()
        params = {}
        if r == 4:
            params["const"] = torch.randn(ch[4], 4, 4, generator=gen)
        else:
            children["conv0"] = _layer(gen, ch[r // 2], ch[r], w_dim, r, 2, conv_clamp)
        children["conv1"] = _layer(gen, ch[r], ch[r], w_dim, r, 1, conv_clamp)
        children["torgb"] = _torgb(gen, ch[r], w_dim, conv_clamp)
        num_ws += len(children) - 1
        blocks[f"b{r}"] = Net("training.networks.SynthesisBlock", params=params,
                              buffers={"resample_filter": _filter()}, children=children,
                              attrs={"in_channels": ch[r // 2] if r > 4 else 0, "resolution": r,
                                     "architecture": architecture, "is_last": r == resolution})
    num_ws += 1
    syn_kwargs = {"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
                  "conv_clamp": conv_clamp, "architecture": architecture}
    synthesis = Net("training.networks.SynthesisNetwork", children=blocks,
                    attrs={"w_dim": w_dim, "img_resolution": resolution, "img_channels": 3,
                           "block_resolutions": block_res, "num_ws": num_ws},
                    init_kwargs={"w_dim": w_dim, "img_resolution": resolution, "img_channels": 3,
                                 **syn_kwargs})
    m_children = OrderedDict()
    embed = w_dim if c_dim else 0
    if c_dim:
        m_children["embed"] = _fc(gen, embed, c_dim, act="linear")
    feats = [z_dim + embed] + [w_dim] * num_layers
    for i in range(num_layers):
        m_children[f"fc{i}"] = _fc(gen, feats[i + 1], feats[i], lr=0.01)
    m_kwargs = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "num_ws": num_ws,
                "num_layers": num_layers}
    mapping = Net("training.networks.MappingNetwork", children=m_children,
                  buffers={"w_avg": 0.5 * torch.randn(w_dim, generator=gen)},
                  attrs={**m_kwargs, "w_avg_beta": 0.995}, init_kwargs=m_kwargs)
    g_kwargs = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": resolution,
                "img_channels": 3, "mapping_kwargs": {"num_layers": num_layers},
                "synthesis_kwargs": syn_kwargs}
    return Net("training.networks.Generator",
               children=OrderedDict([("synthesis", synthesis), ("mapping", mapping)]),
               attrs={"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": resolution,
                      "img_channels": 3, "num_ws": num_ws},
               init_kwargs=g_kwargs, source=source)


def discriminator(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Net("training.networks.Discriminator",
               params={"weight": torch.randn(4, 4, generator=gen)}, attrs={"c_dim": 0})


def snapshot(only=None, source="pass\n", **kwargs):
    """The dict the training loop pickles (only="D": a discriminator-only file)."""
    if only == "D":
        return {"training_set_kwargs": {"resolution": kwargs.get("resolution", 32)},
                "D": discriminator()}
    return {"training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                    "resolution": kwargs.get("resolution", 32)},
            "G": generator(source=source, **{**kwargs, "seed": kwargs.get("seed", 0) + 100}),
            "D": discriminator(),
            "G_ema": generator(source=source, **kwargs),
            "augment_pipe": None}


def write(path, **kwargs):
    with open(path, "wb") as f:
        pickle.dump(snapshot(**kwargs), f, protocol=4)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--z-dim", type=int, default=24)
    p.add_argument("--w-dim", type=int, default=32)
    p.add_argument("--c-dim", type=int, default=0)
    p.add_argument("--conv-clamp", type=float, default=256)
    p.add_argument("--channel-base", type=int, default=512)
    p.add_argument("--channel-max", type=int, default=32)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--architecture", default="skip")
    p.add_argument("--only", choices=["D"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write(a.out, only=a.only, resolution=a.resolution, z_dim=a.z_dim, w_dim=a.w_dim, c_dim=a.c_dim,
          conv_clamp=a.conv_clamp, architecture=a.architecture, seed=a.seed,
          channel_base=a.channel_base, channel_max=a.channel_max, num_layers=a.mapping_layers)


if __name__ == "__main__":
    main()
