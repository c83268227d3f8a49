#!/usr/bin/env python3
"""Checks the exported generator's modulated convolution (scripts/styleclip_export/stylegan2.py).

Run from the repository root:  /usr/bin/python3 tests/python/test_generator_export.py

When a gradient is wanted the exporter computes StyleGAN2's modulated convolution in the
input-scaling form (conv(x·s, w)·d); otherwise in rosinality's form, which the published
checkpoints and the fixtures come from: the weight modulated per sample, a grouped convolution.
This test states rosinality's form step by step (StyleGAN2 §2.2, eqs. 1–3; rosinality
`ModulatedConv2d.forward`) and compares both scripted forms with it — outputs and the gradients the
optimiser uses — for plain, upsampling and toRGB layers, at several batch sizes and with styles far
from 1 (large, tiny, zero, negative), and checks which form each call takes.
Whole-generator parity with rosinality's recorded outputs is the C++ test Generator.* on the
fixture checkpoint.
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from styleclip_export import stylegan2 as sg  # noqa: E402
from checks import check, report  # noqa: E402

def blur_reference(x, kernel, pad0, pad1):
    """rosinality's upfirdn2d_native with up = down = 1: pad, then correlate with the flipped kernel."""
    c = x.shape[1]
    k = torch.flip(kernel, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, [pad0, pad1, pad0, pad1]), k, groups=c)


def modconv_reference(layer, x, s):
    """rosinality: weight = scale·w·s, demodulated per output channel, grouped over the batch."""
    b, c, h, w = x.shape
    k = layer.kernel_size
    weight = layer.scale * layer.weight * s.view(b, 1, c, 1, 1)  # [B, out, in, k, k]
    if layer.demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(b, layer.out_ch, 1, 1, 1)
    x = x.reshape(1, b * c, h, w)
    if layer.upsample:
        weight = weight.transpose(1, 2).reshape(b * c, layer.out_ch, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
        out = out.view(b, layer.out_ch, out.shape[2], out.shape[3])
        return blur_reference(out, layer.blur.kernel, layer.blur.pad0, layer.blur.pad1)
    weight = weight.reshape(b * layer.out_ch, c, k, k)
    out = F.conv2d(x, weight, padding=layer.padding, groups=b)
    return out.view(b, layer.out_ch, out.shape[2], out.shape[3])


def layers():
    torch.manual_seed(0)
    blur = [1.0, 3.0, 3.0, 1.0]
    return {
        "conv 3x3": sg.ModulatedConv2d(24, 16, 3, 8),
        "conv 3x3, upsampling": sg.ModulatedConv2d(24, 16, 3, 8, upsample=True, blur_kernel=blur),
        "toRGB 1x1, no demodulation": sg.ModulatedConv2d(24, 3, 1, 8, demodulate=False),
    }


def styles(batch, c):
    """Rows that stress the normalisation: ordinary, large, tiny, with zeros and negatives."""
    g = torch.Generator().manual_seed(batch)
    rows = [1 + 0.3 * torch.randn(c, generator=g),
            300 * torch.randn(c, generator=g),
            1e-6 * torch.rand(c, generator=g),
            torch.where(torch.arange(c) % 3 == 0, torch.zeros(c), -2 * torch.rand(c, generator=g))]
    return torch.stack([rows[i % len(rows)] for i in range(batch)])


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@check("both forms of every scripted layer equal rosinality's (outputs, and gradients where kept)")
def _():
    worst = 0.0
    for name, layer in layers().items():
        scripted = torch.jit.script(layer)
        for p in layer.parameters():
            p.requires_grad_(False)
        for batch in (1, 3, 4):
            x = torch.randn(batch, 24, 9, 9, generator=torch.Generator().manual_seed(7))
            s = styles(batch, 24)
            # With a gradient wanted: the input-scaling form; compared with its gradients too.
            xs, ss = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
            out = scripted(xs, ss)
            assert torch.equal(out, scripted.forward_scaled_input(xs, ss)), f"{name}: dispatch with grad"
            xr, sr = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
            ref = modconv_reference(layer, xr, sr)
            assert out.shape == ref.shape, (name, out.shape, ref.shape)
            probe = torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))
            (out * probe).sum().backward()
            (ref * probe).sum().backward()
            # Without one: rosinality's weight form.
            with torch.no_grad():
                rendered = scripted(x, s)
                assert torch.equal(rendered, scripted.forward_modulated_weight(x, s)), f"{name}: dispatch"
            # Per row: the rows have scales 1e-6 … 300, so compare each with its own size.
            for i in range(batch):
                errs = [rel_err(out[i], ref[i]), rel_err(xs.grad[i], xr.grad[i]),
                        rel_err(ss.grad[i], sr.grad[i]), rel_err(rendered[i], ref[i])]
                assert all(e < 1e-5 for e in errs), f"{name}, batch {batch}, row {i}: {errs}"
                worst = max(worst, *errs)
            assert torch.isfinite(out).all() and torch.isfinite(ss.grad).all(), name
    return f"worst relative difference {worst:.1e} (bound 1e-5)"


@check("the CPU's polyphase transposed convolution and the GPU's direct one equal conv_transpose2d")
def _():
    # The scripted layers above take the polyphase form here (CPU); a GPU takes the direct one,
    # so both are checked on their own against PyTorch's transposed convolution: odd and
    # non-square sizes, one group and several (the grouped render), with input gradients.
    worst = 0.0
    gen = torch.Generator().manual_seed(13)
    for groups, c_in, c_out, h, w in ((1, 5, 4, 1, 1), (1, 6, 3, 7, 4), (3, 4, 5, 4, 6), (2, 8, 8, 9, 9)):
        weight = torch.randn(groups, c_out, c_in, 3, 3, generator=gen)
        x = torch.randn(1, groups * c_in, h, w, generator=gen)
        xr = x.clone().requires_grad_(True)
        wt = weight.transpose(1, 2).reshape(groups * c_in, c_out, 3, 3)
        ref = F.conv_transpose2d(xr, wt, stride=2, groups=groups)
        probe = torch.randn(ref.shape, generator=gen)
        (ref * probe).sum().backward()
        for fn in (sg.conv_transpose_polyphase, sg.conv_transpose_direct):
            xs = x.clone().requires_grad_(True)
            out = torch.jit.script(fn)(xs, weight, groups)
            assert out.shape == ref.shape, (fn.__name__, out.shape, ref.shape)
            (out * probe).sum().backward()
            errs = [rel_err(out, ref), rel_err(xs.grad, xr.grad)]
            assert max(errs) < 1e-5, (fn.__name__, groups, h, w, errs)
            worst = max(worst, *errs)
    return f"worst relative difference {worst:.1e} (bound 1e-5)"


@check("the CPU's polyphase toRGB upsampling equals upfirdn2d's definition (zero insertion, pad, FIR)")
def _():
    # rosinality's Upsample: upfirdn2d(x, k·4, up=2, pad=(2, 1)); written out here from its
    # definition, independent of the exporter's upfirdn2d.
    up = sg.Upsample([1.0, 3.0, 3.0, 1.0])
    scripted = torch.jit.script(up)
    gen = torch.Generator().manual_seed(17)
    worst = 0.0
    for b, c, h, w in ((1, 3, 4, 4), (2, 3, 5, 7), (1, 6, 1, 1)):
        x = torch.randn(b, c, h, w, generator=gen)
        zero_inserted = torch.zeros(b, c, 2 * h, 2 * w)
        zero_inserted[:, :, ::2, ::2] = x
        ref = blur_reference(zero_inserted, up.kernel, 2, 1)
        xs = x.clone().requires_grad_(True)
        out = scripted(xs)
        assert out.shape == ref.shape, (out.shape, ref.shape)
        worst = max(worst, rel_err(out.detach(), ref))
        # The gradient: the adjoint, checked against autograd through the reference.
        xr = x.clone().requires_grad_(True)
        zr = F.pad(xr.reshape(b, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(b, c, 2 * h, 2 * w)
        probe = torch.randn(ref.shape, generator=gen)
        (blur_reference(zr, up.kernel, 2, 1) * probe).sum().backward()
        (out * probe).sum().backward()
        worst = max(worst, rel_err(xs.grad, xr.grad))
    assert worst < 1e-5, worst
    return f"worst relative difference {worst:.1e} (bound 1e-5)"


@check("a whole generator renders what rosinality's form renders, batch 1 and 3, with and without grad")
def _():
    ckpt = sg.random_checkpoint(32, 16, 2, channel_divisor=32, seed=5)
    g = sg.build_generator(ckpt["g_ema"], ckpt["latent_avg"])
    for p in g.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(g)
    torch.manual_seed(3)
    with torch.no_grad():
        ws = g.mapping(torch.randn(3, 16)).unsqueeze(1).repeat(1, g.num_ws, 1)
        ws = ws + 0.5 * torch.randn_like(ws)
        rendered = scripted.synthesis(ws, False)
        one = scripted.synthesis(ws[1:2], False)
        original = sg.ModulatedConv2d.forward
        sg.ModulatedConv2d.forward = modconv_reference  # eager reference run of the same weights
        try:
            ref = g.synthesis(ws, False)
        finally:
            sg.ModulatedConv2d.forward = original
    with_grad = scripted.synthesis(ws.clone().requires_grad_(True), False).detach()
    errs = [rel_err(rendered, ref), rel_err(with_grad, ref)]
    assert max(errs) < 1e-5, errs
    assert rel_err(one[0], ref[1]) < 1e-5, "a row depends on its batch"
    return f"relative differences {errs[0]:.1e} (no grad), {errs[1]:.1e} (grad)"


@check("bf16 autocast (CPU) stays within bf16 rounding of fp32 in both forms, large styles included")
def _():
    worst = 0.0
    for name, layer in layers().items():
        scripted = torch.jit.script(layer)
        x = torch.randn(4, 24, 9, 9, generator=torch.Generator().manual_seed(11)) * 50
        s = styles(4, 24)
        with torch.no_grad():
            ref = modconv_reference(layer, x, s)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outs = [scripted.forward_scaled_input(x, s), scripted.forward_modulated_weight(x, s)]
        for out in outs:
            for i in range(4):
                e = rel_err(out[i].float(), ref[i])
                assert e < 0.05 and math.isfinite(e), f"{name}, row {i}: {e}"
                worst = max(worst, e)
    return f"worst relative difference {worst:.1e} (bound 5e-2; bf16 keeps 8 bits)"


if __name__ == "__main__":
    sys.exit(report())
