#!/usr/bin/env python3
"""Writes StyleGAN3 network pickles laid out as NVIDIA's stylegan3 training loop writes them (a dict
`training_set_kwargs, G, D, G_ema, augment_pipe`, each network recorded by NVIDIA's `persistence`
module), with random weights, so that the exporter's StyleGAN3 path can be tested from this
repository alone. No NVIDIA code is used.

Usage: sg3_pickle.py --config t|r --resolution 32 --out OUT.pkl [--seed 0] [--num-layers 14]
                     [--w-dim 32] [--z-dim 32] [--c-dim 0] [--channel-base 1024] [--channel-max 32]
                     [--mapping-layers 2] [--conv-clamp 256]
(the published FFHQ 1024 sizes: --resolution 1024 --w-dim 512 --z-dim 512 --channel-base 32768
 --channel-max 512 for T, 65536 and 1024 for R)

What is recorded mirrors NVIDIA's public `training/networks_stylegan3.py` and the reference
pickles made with it: bare class names (`Generator`, `SynthesisNetwork`, `SynthesisInput`,
`SynthesisLayer`, `FullyConnectedLayer`, `MappingNetwork`); the constructor arguments
(`_init_args`, `_init_kwargs`); the instance attributes with NVIDIA's types (sizes as 2-element
integer arrays, cutoffs and half-widths as numpy float64, `use_fp16` as a numpy bool, `padding`
as a list, `layer_names`); parameters and buffers under NVIDIA's names, `up_filter` and
`down_filter` None for ToRGB. The sizes and filters are designed by
scripts/styleclip_export/stylegan3.py (`network_spec`, as the paper's Appendix F and C describe;
the reference pickles check that design), the weights drawn by its `random_generator`: biases,
the input affine, `magnitude_ema` (the mean square of each layer's input) and `w_avg` (the mean
of mapped samples) are away from NVIDIA's initial values so that none hides a mistake.
"""

import argparse
import os
import pickle
import sys
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))

from nvidia_pickle import Net  # noqa: E402
from styleclip_export import stylegan3  # noqa: E402

SOURCE = "# stand-in for training/networks_stylegan3.py: never run by a reader\n"


def _net(class_name, params=None, buffers=None, children=None, attrs=None, init_kwargs=None,
         init_args=()):
    net = Net(class_name, params=params, buffers=buffers, children=children, attrs=attrs,
              init_kwargs=init_kwargs, source=SOURCE)
    net.meta["state"]["_init_args"] = tuple(init_args)
    return net


def _size(n):
    return np.broadcast_to(np.asarray(int(n)), [2]).copy()


def _fc(weight, bias, in_f, out_f, lr=1.0, activation="linear", init_kwargs=None):
    return _net("FullyConnectedLayer", params={"weight": weight.clone(), "bias": bias.clone()},
                attrs={"in_features": in_f, "out_features": out_f, "activation": activation,
                       "weight_gain": np.float64(lr / np.sqrt(in_f)),
                       "bias_gain": lr if lr != 1 else 1},
                init_kwargs=init_kwargs or {}, init_args=(in_f, out_f))


def generator(config="t", resolution=32, z_dim=32, w_dim=32, c_dim=0, num_layers=14,
              channel_base=1024, channel_max=32, mapping_layers=2, conv_clamp=256, seed=0):
    """A recorded StyleGAN3 Generator (`Net`) with random weights, and the eager generator made
    from the same numbers (stylegan3.random_generator)."""
    cfg = {"config": config, "resolution": resolution, "w_dim": w_dim, "z_dim": z_dim,
           "c_dim": c_dim, "n_mlp": mapping_layers, "num_layers": num_layers,
           "channel_base": channel_base, "channel_max": channel_max, "conv_clamp": conv_clamp}
    g, desc = stylegan3.random_generator(cfg, seed)
    spec = desc["spec"]
    kernel = desc["conv_kernel"]
    beta = 0.999
    extra = {"conv_kernel": kernel, "use_radial_filters": True} if config == "r" else {}

    # Mapping network.
    m_children = OrderedDict()
    if c_dim:
        m_children["embed"] = _fc(g.embed.weight, g.embed.bias, c_dim, w_dim)
    for i, layer in enumerate(g.mapping_layers):
        m_children[f"fc{i}"] = _fc(layer.weight, layer.bias, layer.weight.shape[1], w_dim,
                                   lr=0.01, activation="lrelu",
                                   init_kwargs={"activation": "lrelu", "lr_multiplier": 0.01})
    num_ws = g.num_ws
    m_kwargs = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "num_ws": num_ws,
                "num_layers": mapping_layers}
    m_attrs = {**m_kwargs, "w_avg_beta": 0.998}
    if not c_dim:
        m_attrs["embed"] = None
    mapping = _net("MappingNetwork", children=m_children, buffers={"w_avg": g.w_avg.clone()},
                   attrs=m_attrs, init_kwargs=m_kwargs)

    # Synthesis input.
    inp = g.input
    isp = spec["input"]
    in_kwargs = {"w_dim": w_dim, "channels": isp["channels"], "size": isp["size"],
                 "sampling_rate": np.float64(isp["sampling_rate"]),
                 "bandwidth": np.float64(isp["bandwidth"])}
    input_net = _net(
        "SynthesisInput", params={"weight": inp.weight.clone()},
        buffers={"transform": inp.transform.clone(), "freqs": inp.freqs.clone(),
                 "phases": inp.phases.clone()},
        children={"affine": _fc(inp.affine.weight, inp.affine.bias, w_dim, 4,
                                init_kwargs={"weight_init": 0, "bias_init": [1, 0, 0, 0]})},
        attrs={**in_kwargs, "size": _size(isp["size"])}, init_kwargs=in_kwargs)

    # Synthesis layers, named as NVIDIA names them: L{idx}_{out_size}_{out_channels}.
    syn_children = OrderedDict([("input", input_net)])
    names = []
    layers = list(g.layers) + [g.torgb]
    for idx, (sp, layer) in enumerate(zip(spec["layers"], layers)):
        kw = {"w_dim": w_dim, "is_torgb": sp["is_torgb"],
              "is_critically_sampled": sp["is_critically_sampled"],
              "use_fp16": np.bool_(sp["use_fp16"]), "in_channels": sp["in_channels"],
              "out_channels": sp["out_channels"], "in_size": sp["in_size"],
              "out_size": sp["out_size"], "in_sampling_rate": sp["in_sampling_rate"],
              "out_sampling_rate": sp["out_sampling_rate"],
              "in_cutoff": np.float64(sp["in_cutoff"]), "out_cutoff": np.float64(sp["out_cutoff"]),
              "in_half_width": np.float64(sp["in_half_width"]),
              "out_half_width": np.float64(sp["out_half_width"]), "magnitude_ema_beta": beta,
              **extra}
        attrs = {**{k: v for k, v in kw.items() if k not in ("magnitude_ema_beta", "use_radial_filters")},
                 "in_size": _size(sp["in_size"]), "out_size": _size(sp["out_size"]),
                 "tmp_sampling_rate": sp["tmp_sampling_rate"], "conv_kernel": sp["conv_kernel"],
                 "conv_clamp": conv_clamp, "magnitude_ema_beta": beta,
                 "up_factor": sp["up_factor"], "up_taps": sp["up_taps"],
                 "down_factor": sp["down_factor"], "down_taps": sp["down_taps"],
                 "down_radial": bool(sp["down_radial"]), "padding": list(sp["padding"])}
        buffers = OrderedDict([
            ("magnitude_ema", layer.magnitude_ema.clone()),
            ("up_filter", None if sp["up_filter"] is None else torch.from_numpy(sp["up_filter"])),
            ("down_filter", None if sp["down_filter"] is None else torch.from_numpy(sp["down_filter"])),
        ])
        net = _net("SynthesisLayer", params={"weight": layer.weight.clone(), "bias": layer.bias.clone()},
                   buffers=buffers,
                   children={"affine": _fc(layer.affine.weight, layer.affine.bias, w_dim,
                                           sp["in_channels"], init_kwargs={"bias_init": 1})},
                   attrs=attrs, init_kwargs=kw)
        name = f"L{idx}_{sp['out_size']}_{sp['out_channels']}"
        names.append(name)
        syn_children[name] = net
    syn_kwargs = {"w_dim": w_dim, "img_resolution": resolution, "img_channels": 3,
                  "channel_base": channel_base, "channel_max": channel_max,
                  "magnitude_ema_beta": beta, **extra}
    if num_layers != 14:
        syn_kwargs["num_layers"] = num_layers
    synthesis = _net("SynthesisNetwork", children=syn_children,
                     attrs={"w_dim": w_dim, "num_ws": num_ws, "img_resolution": resolution,
                            "img_channels": 3, "num_layers": num_layers,
                            "num_critical": spec["num_critical"], "margin_size": spec["margin_size"],
                            "output_scale": 0.25, "num_fp16_res": 4, "layer_names": names},
                     init_kwargs=syn_kwargs)
    g_kwargs = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": resolution,
                "img_channels": 3, "mapping_kwargs": {"num_layers": mapping_layers},
                **{k: v for k, v in syn_kwargs.items() if k not in ("w_dim", "img_resolution", "img_channels")}}
    G = _net("Generator", children=OrderedDict([("synthesis", synthesis), ("mapping", mapping)]),
             attrs={"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": resolution,
                    "img_channels": 3, "num_ws": num_ws},
             init_kwargs=g_kwargs)
    return G, g


def snapshot(**kwargs):
    """The dict NVIDIA's training loop pickles (G is another draw than G_ema)."""
    G_ema, _ = generator(**kwargs)
    G, _ = generator(**{**kwargs, "seed": kwargs.get("seed", 0) + 100})
    D = _net("Discriminator", params={"weight": torch.randn(4, 4)}, attrs={"c_dim": kwargs.get("c_dim", 0)})
    return {"training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                    "resolution": kwargs.get("resolution", 32)},
            "G": G, "D": D, "G_ema": G_ema, "augment_pipe": None}


def write(path, **kwargs):
    with open(path, "wb") as f:
        pickle.dump(snapshot(**kwargs), f, protocol=4)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["t", "r"], required=True)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-layers", type=int, default=14)
    p.add_argument("--w-dim", type=int, default=32)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--c-dim", type=int, default=0)
    p.add_argument("--channel-base", type=int, default=1024)
    p.add_argument("--channel-max", type=int, default=32)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--conv-clamp", type=float, default=256)
    a = p.parse_args()
    clamp = int(a.conv_clamp) if float(a.conv_clamp).is_integer() else a.conv_clamp
    write(a.out, config=a.config, resolution=a.resolution, seed=a.seed, num_layers=a.num_layers,
          w_dim=a.w_dim, z_dim=a.z_dim, c_dim=a.c_dim, channel_base=a.channel_base,
          channel_max=a.channel_max, mapping_layers=a.mapping_layers, conv_clamp=clamp)


if __name__ == "__main__":
    main()
