"""NVIDIA's StyleGAN2 network pickles (stylegan2-ada-pytorch, and the StyleGAN2 networks of the
stylegan3 release) converted to this project's scriptable generator (`stylegan2.py`).

The pickle is read by `safe_pickle` as a tree of recorded modules: nothing in it is executed, and
no NVIDIA code is used here. Facts about their generator come from the public source
(`training/networks.py` in NVlabs/stylegan2-ada-pytorch, `training/networks_stylegan2.py` in
NVlabs/stylegan3) and from the paper (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"). Where it differs from rosinality's, and how the conversion keeps
the numbers:

* Mapping: `normalize_2nd_moment` is rosinality's PixelNorm; a conditional generator embeds the
  one-hot label (`embed`, linear, lr multiplier 1), normalises it the same way and joins it to z;
  the `fc{i}` layers are equalised linear layers with the same weight and bias gains as
  rosinality's EqualLinear, so their tensors copy as they are. `w_avg` is the truncation centre.
* Synthesis layers: NVIDIA's stored conv weight is the effective one (its demodulated
  convolution applies no weight gain), rosinality's is scaled by 1/sqrt(fan_in) at run time, so
  the weight is multiplied by sqrt(fan_in) here. ToRGB applies `weight_gain` to the styles,
  rosinality the same factor to the weight: same product, tensors copied. The style space stays
  each `affine` output, before that gain.
* Noise is `noise_const × noise_strength`: rosinality's fixed noise map and noise weight.
* Bias, leaky ReLU, gain √2, then the clamp to ±`conv_clamp` (every layer, in fp32 too); ToRGB
  clamps its output before it joins the skip path.
* Up-sampling convolution (transposed, then the [1, 3, 3, 1] filter with gain 4) and the `skip`
  image path are rosinality's; the filter is taken from the pickle and must be that one.
* `num_fp16_res` only selects half precision on NVIDIA's side; the export is fp32 (recorded).

`orig` and `resnet` architectures, and images with other than 3 channels, are refused.
"""

import math
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from styleclip_export import stylegan2
from styleclip_export.safe_pickle import PersistentModule


class NotAGenerator(ValueError):
    """The pickle holds no usable generator (exit 3 at the command line)."""


def pick_generator(obj) -> Tuple[PersistentModule, str]:
    """G_ema from a training snapshot (or G when there is none), or a bare pickled generator."""
    if isinstance(obj, PersistentModule):
        nets = {"": obj}
    elif isinstance(obj, dict):
        nets = {k: v for k, v in obj.items() if isinstance(v, PersistentModule)}
    else:
        raise NotAGenerator(f"it holds a {type(obj).__name__}, not NVIDIA's network snapshot")
    for key in ("G_ema", "G", ""):
        net = nets.get(key)
        if net is not None and net.short_name == "Generator":
            return net, key or "the pickled Generator"
    found = ", ".join(f"{k} ({v.short_name})" for k, v in nets.items()) or "no networks"
    raise NotAGenerator(f"it has no generator (G_ema or G): {found}")


def _kw(net: PersistentModule, name: str, default=None):
    if name in net.init_kwargs:
        return net.init_kwargs[name]
    return net.attrs.get(name, default)


def _get(sd: Dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in sd:
        raise NotAGenerator(f"the generator has no tensor '{key}'")
    return sd[key].detach().float()


RESAMPLE_FILTER = stylegan2.make_kernel([1.0, 3.0, 3.0, 1.0])


def describe(G: PersistentModule) -> dict:
    """Every size of the generator, read from the pickle's recorded arguments and tensors."""
    if "synthesis" not in G.children or "mapping" not in G.children:
        raise NotAGenerator("its Generator has no mapping and synthesis networks")
    syn, mapping = G.child("synthesis"), G.child("mapping")
    sd = G.state_dict()
    block_res = [int(r) for r in syn.attrs.get("block_resolutions", [])]
    if not block_res or "b4" not in syn.children:
        class_name = syn.class_name
        raise NotAGenerator(f"its synthesis network ({class_name}) is neither StyleGAN2's "
                            "(no b4 block) nor StyleGAN3's (no input and L0_… layers)")
    for r in block_res:
        arch = syn.child(f"b{r}").attrs.get("architecture", "skip")
        if arch != "skip":
            raise NotAGenerator(f"its synthesis uses the '{arch}' architecture; only StyleGAN2's "
                                "default 'skip' architecture is supported")
    img_channels = int(_kw(G, "img_channels", 3))
    if img_channels != 3:
        raise NotAGenerator(f"it makes {img_channels}-channel images; only RGB is supported")
    c_dim = int(_kw(G, "c_dim", 0))
    n_mlp = 0
    while f"mapping.fc{n_mlp}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0:
        raise NotAGenerator("its mapping network has no fc layers")
    mapping_dims = [int(sd["mapping.fc0.weight"].shape[1])]
    mapping_dims += [int(sd[f"mapping.fc{i}.weight"].shape[0]) for i in range(n_mlp)]
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in block_res}
    kernel_size = int(sd["synthesis.b4.conv1.weight"].shape[-1])
    conv_clamp = _kw(syn, "conv_clamp", None)
    return {
        "resolution": max(block_res),
        "block_resolutions": block_res,
        "z_dim": int(_kw(G, "z_dim", mapping_dims[0])),
        "c_dim": c_dim,
        "w_dim": int(_kw(G, "w_dim", mapping_dims[-1])),
        "num_ws": int(_kw(G, "num_ws", 0)) or int(syn.attrs.get("num_ws", 0)),
        "n_mlp": n_mlp,
        "mapping_dims": mapping_dims,
        "lr_mlp": float(_kw(mapping, "lr_multiplier", 0.01)),
        "channels": channels,
        "kernel_size": kernel_size,
        "conv_clamp": None if conv_clamp is None else float(conv_clamp),
        "num_fp16_res": int(_kw(syn, "num_fp16_res", 0)),
        "channel_base": _kw(syn, "channel_base", None),
        "channel_max": _kw(syn, "channel_max", None),
        "architecture": "skip",
    }


def _layer(sd, src: str, dst: str, out: Dict[str, torch.Tensor], to_rgb: bool, res: int):
    w = _get(sd, f"{src}.weight")
    if to_rgb:
        out[f"{dst}.conv.weight"] = w.unsqueeze(0)
        out[f"{dst}.bias"] = _get(sd, f"{src}.bias").reshape(1, -1, 1, 1)
    else:
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        out[f"{dst}.conv.weight"] = (w * math.sqrt(fan_in)).unsqueeze(0)
        out[f"{dst}.activate.bias"] = _get(sd, f"{src}.bias")
        out[f"{dst}.noise.weight"] = _get(sd, f"{src}.noise_strength").reshape(1)
        out[f"{dst}.noise.const"] = _get(sd, f"{src}.noise_const").reshape(1, 1, res, res)
        flt = sd.get(f"{src}.resample_filter")
        if flt is not None and (flt.float() - RESAMPLE_FILTER).abs().max() > 1e-6:
            raise NotAGenerator(f"'{src}' uses a resampling filter other than StyleGAN2's "
                                "[1, 3, 3, 1]; not supported")
    out[f"{dst}.conv.modulation.weight"] = _get(sd, f"{src}.affine.weight")
    out[f"{dst}.conv.modulation.bias"] = _get(sd, f"{src}.affine.bias")


def build_generator(G: PersistentModule) -> Tuple[stylegan2.Generator, dict]:
    """Our scriptable Generator with G's weights, and its description (`describe`)."""
    cfg = describe(G)
    sd = G.state_dict()
    clamp = -1.0 if cfg["conv_clamp"] is None else cfg["conv_clamp"]
    g = stylegan2.Generator(cfg["resolution"], cfg["w_dim"], cfg["n_mlp"], cfg["channels"],
                            lr_mlp=cfg["lr_mlp"], kernel_size=cfg["kernel_size"],
                            mapping_dims=cfg["mapping_dims"], c_dim=cfg["c_dim"],
                            conv_clamp=clamp)
    if g.num_ws != cfg["num_ws"] or g.z_dim != cfg["z_dim"]:
        raise NotAGenerator(f"its recorded sizes (num_ws {cfg['num_ws']}, z_dim {cfg['z_dim']}) do "
                            f"not match its tensors (num_ws {g.num_ws}, z_dim {g.z_dim})")

    out: Dict[str, torch.Tensor] = OrderedDict()
    for i in range(cfg["n_mlp"]):
        out[f"style.{i + 1}.weight"] = _get(sd, f"mapping.fc{i}.weight")
        out[f"style.{i + 1}.bias"] = _get(sd, f"mapping.fc{i}.bias")
    if cfg["c_dim"] > 0:
        out["embed.weight"] = _get(sd, "mapping.embed.weight")
        out["embed.bias"] = _get(sd, "mapping.embed.bias")
    out["input.input"] = _get(sd, "synthesis.b4.const").unsqueeze(0)
    _layer(sd, "synthesis.b4.conv1", "conv1", out, False, 4)
    _layer(sd, "synthesis.b4.torgb", "to_rgb1", out, True, 4)
    for k, r in enumerate(cfg["block_resolutions"][1:]):
        _layer(sd, f"synthesis.b{r}.conv0", f"convs.{2 * k}", out, False, r)
        _layer(sd, f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}", out, False, r)
        _layer(sd, f"synthesis.b{r}.torgb", f"to_rgbs.{k}", out, True, r)
    out["w_avg"] = _get(sd, "mapping.w_avg").reshape(-1)

    own = g.state_dict()
    for name, value in own.items():
        if name in out:
            continue
        # The blur kernels are construction constants (checked against the pickle's filters).
        if name.endswith("blur.kernel") or name.endswith("upsample.kernel"):
            out[name] = value
    missing = [k for k in own if k not in out]
    unexpected = [k for k in out if k not in own]
    wrong = [k for k in own if k in out and tuple(out[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise NotAGenerator(f"its tensors do not fit a StyleGAN2 generator (missing {missing[:4]}, "
                            f"unexpected {unexpected[:4]}, wrong shape {wrong[:4]})")
    g.load_state_dict(out, strict=True)
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    return g, cfg
