"""A scriptable StyleGAN2 generator whose parameter names match rosinality's checkpoints.

Source of the architecture: rosinality/stylegan2-pytorch `model.py` as copied into StyleCLIP
(`models/stylegan2/model.py`); facts in docs/algorithms.md §8 and §3.1.

rosinality's `Generator.forward` does not script (mode flags, variable return arity, dynamic
`getattr` on noise buffers), so this module is written for `torch.jit.script` from the start:

* `mapping(z)`                    z [B, z_dim] -> w [B, w_dim]
* `styles(ws)`                    W+ [B, num_ws, w_dim] -> list of S tensors [B, C_l], StyleSpace order
                                  (conv1, to_rgb1, then per resolution conv-up, conv, to_rgb)
* `synthesis(ws, randomize_noise)`            W+ -> image [B, 3, R, R] (raw, about [-1, 1])
* `synthesis_from_styles(styles, randomize_noise)`  S -> image
* buffer `w_avg` [w_dim]          the checkpoint's `latent_avg` (truncation centre)

Every size is read from the state dict's shapes. The one deliberate difference in layout: the
fixed noise maps that rosinality keeps as `noises.noise_{i}` are stored beside the layer that
uses them (`conv1.noise.const`, `convs.{i}.noise.const`), because TorchScript cannot index
buffers by a computed name. `load_rosinality` maps the names and still checks that every
checkpoint key is used and every module tensor is filled.
"""

import math
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# sqrt(2), the gain of rosinality's fused_lrelu. Written as a literal at each use because
# TorchScript cannot close over module-level Python floats.


def upfirdn2d(x: Tensor, kernel: Tensor, up: int, pad0: int, pad1: int) -> Tensor:
    """rosinality's `upfirdn2d_native` for up >= 1, down = 1, the same pad on both axes.

    Zero-insertion upsampling, padding, then a depthwise convolution with the flipped kernel.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    kh = kernel.shape[0]
    kw = kernel.shape[1]
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight.to(x.dtype), groups=c)


def polyphase_weight(weight: Tensor) -> Tensor:
    """[B, out, in, 3, 3] weights of a stride-2 transposed 3×3 convolution (correlation
    form, weight[o, i, ky, kx] = conv_transpose2d's w[i, o, ky, kx]) -> [B·4·out, in, 2, 2]
    weights of the ordinary 2×2 convolution that computes its four output phases at once.

    With y = conv_transpose2d(x, ·, stride 2, padding 0) and xp = x padded by 1 on every side,
    y[2m] = w[0]·x[m] + w[2]·x[m-1] = w[2]·xp[m] + w[0]·xp[m+1] and y[2m+1] = w[1]·xp[m+1] on
    each axis; so phase (a, b) of the output is a 2×2 correlation of xp, and pixel_shuffle(·, 2)
    puts the phases back in place (output channel o·4 + a·2 + b). The result is y with one more
    row and column of zeros at the end (the phase-1 taps of the last row read only padding).
    LibTorch's CPU transposed convolution is an im2col loop (`slow_conv_transpose2d`: 37 % of a
    1024 px render on this machine's CPU); the 2×2 convolution goes to oneDNN (bench/RESULTS.md).
    """
    rows = [weight[:, :, :, 2:3], weight[:, :, :, 0:1], torch.zeros_like(weight[:, :, :, 0:1]),
            weight[:, :, :, 1:2]]
    w = torch.cat(rows, 3)  # rows in phase-major order: (a=0: ky 2, 0), (a=1: none, ky 1)
    cols = [w[:, :, :, :, 2:3], w[:, :, :, :, 0:1], torch.zeros_like(w[:, :, :, :, 0:1]),
            w[:, :, :, :, 1:2]]
    w = torch.cat(cols, 4)  # [B, out, in, 4, 4]
    b, o, i = w.shape[0], w.shape[1], w.shape[2]
    w = w.reshape(b, o, i, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)  # [B, out, a, b, in, dy, dx]
    return w.reshape(b * o * 4, i, 2, 2)


def conv_transpose_stride2(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    """conv_transpose2d(x, weight.transpose(·), stride 2, padding 0, groups) for weights
    [groups, out, in, k, k] in correlation form. 3×3 weights on the CPU become one ordinary
    convolution (see polyphase_weight; on the CPU a crop, a view, of the pixel-shuffled phases);
    a GPU, or another kernel size, gets the transposed convolution itself."""
    if x.is_cuda or weight.shape[3] != 3 or weight.shape[4] != 3:
        return conv_transpose_direct(x, weight, groups)
    return conv_transpose_polyphase(x, weight, groups)


def conv_transpose_direct(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    g, o, i = weight.shape[0], weight.shape[1], weight.shape[2]
    wt = weight.transpose(1, 2).reshape(g * i, o, weight.shape[3], weight.shape[4])
    return F.conv_transpose2d(x, wt, padding=0, stride=2, groups=groups)


def conv_transpose_polyphase(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    h, w = x.shape[2], x.shape[3]
    out = F.conv2d(F.pad(x, [1, 1, 1, 1]), polyphase_weight(weight).to(x.dtype), groups=groups)
    return F.pixel_shuffle(out, 2)[:, :, : 2 * h + 1, : 2 * w + 1]


def make_kernel(k: List[float]) -> Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


class Blur(nn.Module):
    def __init__(self, kernel: List[float], pad0: int, pad1: int, upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad0 = pad0
        self.pad1 = pad1

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, 1, self.pad0, self.pad1)


class Upsample(nn.Module):
    def __init__(self, kernel: List[float], factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = len(kernel) - factor
        self.factor = factor
        self.pad0 = (p + 1) // 2 + factor - 1
        self.pad1 = p // 2

    def forward(self, x: Tensor) -> Tensor:
        # factor 2 and 4 taps fix the pads at (2, 1) (__init__), which the polyphase form assumes.
        if not x.is_cuda and self.factor == 2 and self.kernel.shape[0] == 4:
            return upsample2x_polyphase(x, self.kernel)
        return upfirdn2d(x, self.kernel, self.factor, self.pad0, self.pad1)


def upsample2x_polyphase(x: Tensor, kernel: Tensor) -> Tensor:
    """upfirdn2d(x, kernel, up=2, pad0=2, pad1=1) for a 4×4 kernel (StyleGAN2's toRGB skip
    upsampling) without the zero-inserted image: each of the four output phases is a 3×3
    correlation of x padded by 1, and pixel_shuffle interleaves them.

    On each axis, with w = the flipped kernel (what upfirdn2d correlates with) and xp[i] = x[i-1]:
    out[2m] = w[0]·x[m-1] + w[2]·x[m] = (w0, w2, 0)·xp[m:m+3] and
    out[2m+1] = w[1]·x[m] + w[3]·x[m+1] = (0, w1, w3)·xp[m:m+3]. 9 multiply-adds per output
    instead of the zero-inserted form's 16 (three quarters of whose taps meet zeros), and no
    image at twice the size to pad; tests/python/test_generator_export.py checks it against
    upfirdn2d's definition.
    """
    c = x.shape[1]
    w = torch.flip(kernel, [0, 1])
    z = torch.zeros_like(w[0:1])
    rows = torch.cat([w[0:1], w[2:3], z, z, w[1:2], w[3:4]], 0)  # (a, dy): a-major, [6, 4]
    zc = torch.zeros_like(rows[:, 0:1])
    taps = torch.cat([rows[:, 0:1], rows[:, 2:3], zc, zc, rows[:, 1:2], rows[:, 3:4]], 1)  # [6, 6]
    phases = taps.reshape(2, 3, 2, 3).permute(0, 2, 1, 3).reshape(4, 1, 3, 3)  # [(a, b), 1, dy, dx]
    weight = phases.repeat(c, 1, 1, 1).to(x.dtype)  # channel k's phases at 4k .. 4k + 3
    out = F.conv2d(F.pad(x, [1, 1, 1, 1]), weight, groups=c)
    return F.pixel_shuffle(out, 2)


class EqualLinear(nn.Module):
    """Equalised linear layer; `lrelu` is rosinality's `fused_lrelu` activation."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 lrelu: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.lrelu = lrelu

    def forward(self, x: Tensor) -> Tensor:
        if self.lrelu:
            out = F.linear(x, self.weight * self.scale)
            return F.leaky_relu(out + self.bias * self.lr_mul, 0.2) * 1.4142135623730951
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """Modulated convolution (StyleGAN2 §2.2, eqs. 1–3), in the form that suits the call.

    rosinality scales the weight per sample (w' = w·s, w'' = w'·d) and runs a grouped
    convolution. Because s scales input channels and d output channels, the same function is
    conv(x·s, w)·d — stylegan2-ada-pytorch's `fused_modconv=False` path. When a gradient is
    wanted (optimisation, mapper training, projection) this module uses that form: a batch is one
    ordinary convolution, and the gradient with respect to s needs no weight-gradient
    convolution (the weights are frozen), only the input gradient the layers below need anyway:
    optimisation steps 1.1–1.2× faster on the CPU where the generator dominates
    (bench/RESULTS.md), for 17–28 % more activation memory. Rendering without a gradient on the
    CPU (or one image on a GPU) keeps rosinality's weight form, which rendered 5–10 % faster here
    than the input-scaling form.

    For half precision the input-scaling form divides the styles by each row's largest |s| before
    they scale x and puts that factor back with d, so the intermediate stays within the input's
    range; d is computed element-wise (fp32 under autocast) from the normalised styles. Both forms
    equal rosinality's to float rounding (tests/python/test_generator_export.py).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: List[float] = [1.0, 3.0, 3.0, 1.0]):
        super().__init__()
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, (p + 1) // 2 + factor - 1, p // 2 + 1, upsample_factor=factor)
        else:
            self.blur = nn.Identity()

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        # On a GPU a batch renders as one ordinary convolution too, expecting one large
        # convolution to beat hundreds of wide groups (stylegan2-ada-pytorch renders batches
        # this way in half precision). Not yet measured on a GPU: scripts/gpu_check.sh times it.
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)
        if wants_grad or (x.is_cuda and x.shape[0] > 1):
            return self.forward_scaled_input(x, s)
        return self.forward_modulated_weight(x, s)

    def forward_scaled_input(self, x: Tensor, s: Tensor) -> Tensor:
        """conv(x·s, w)·d: what a gradient wants (see the class docstring)."""
        b = x.shape[0]
        weight = self.scale * self.weight[0]  # [out, in, k, k]
        m = s.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)  # [B, 1]
        sn = s / m
        x = x * sn.reshape(b, self.in_ch, 1, 1)
        if self.upsample:
            out = conv_transpose_stride2(x, weight.unsqueeze(0), 1)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # d = 1/sqrt(Σ(w·s)² + 1e-8) = (1/m)/sqrt(Σ(w·sn)² + 1e-8/m²); times m from above.
            w2 = weight.pow(2).sum([2, 3])  # [out, in]
            norm2 = (sn.pow(2).unsqueeze(1) * w2.unsqueeze(0)).sum(2)  # [B, out]
            coef = torch.rsqrt(norm2 + 1e-8 / (m * m))
        else:
            coef = m.expand(b, self.out_ch)
        out = out * coef.reshape(b, self.out_ch, 1, 1).to(out.dtype)
        if self.upsample:
            return self.blur(out)
        return out

    def forward_modulated_weight(self, x: Tensor, s: Tensor) -> Tensor:
        """rosinality's form (per-sample weights, a convolution grouped over the batch): no
        activations are kept for a backward pass, and on the CPU it renders 5–10 % faster."""
        b, c, h, w = x.shape
        weight = self.scale * self.weight * s.reshape(b, 1, c, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.reshape(b, self.out_ch, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            out = conv_transpose_stride2(x, weight, b)
            out = out.reshape(b, self.out_ch, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.reshape(b * self.out_ch, c, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.reshape(b, self.out_ch, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        # rosinality's `noises.noise_{i}`, kept here (see the module docstring).
        self.register_buffer("const", torch.randn(1, 1, size, size))

    def forward(self, x: Tensor, randomize: bool) -> Tensor:
        if randomize:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], dtype=x.dtype,
                                device=x.device)
        else:
            noise = self.const
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Bias, leaky ReLU (slope 0.2) and gain √2; then, for generators trained with NVIDIA's
    `conv_clamp`, the clamp to ±clamp that stylegan2-ada-pytorch's `bias_act` applies in every
    precision (`clamp` < 0: none, as rosinality)."""

    def __init__(self, ch: int, clamp: float = -1.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(ch))
        self.clamp = float(clamp)

    def forward(self, x: Tensor) -> Tensor:
        if self.clamp < 0:
            return F.leaky_relu(x + self.bias.reshape(1, -1, 1, 1), 0.2) * 1.4142135623730951
        # Gain first, then the leaky ReLU in place: its backward keeps its result, which is the
        # clamp's input, so autograd holds one tensor for both. `clamp` after the out-of-place
        # form would hold one more activation per layer (measured at 1024 px: +550 MB peak and
        # +5% time per optimisation step). Equal to the form above up to one rounding.
        out = F.leaky_relu((x + self.bias.reshape(1, -1, 1, 1)) * 1.4142135623730951, 0.2,
                           inplace=True)
        return out.clamp(-self.clamp, self.clamp)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, size: int,
                 upsample: bool, blur_kernel: List[float], clamp: float = -1.0):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection(size)
        self.activate = FusedLeakyReLU(out_ch, clamp)

    def forward(self, x: Tensor, s: Tensor, randomize_noise: bool) -> Tensor:
        return self.activate(self.noise(self.conv(x, s), randomize_noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool, blur_kernel: List[float],
                 clamp: float = -1.0):
        super().__init__()
        self.clamp = float(clamp)  # NVIDIA's ToRGBLayer clamps its own output, not the sum
        self.has_upsample = upsample
        if upsample:
            self.upsample = Upsample(blur_kernel)
        else:
            self.upsample = nn.Identity()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, s: Tensor, skip: Tensor) -> Tensor:
        out = self.conv(x, s) + self.bias
        if self.clamp >= 0:
            out = out.clamp(-self.clamp, self.clamp)
        if self.has_upsample:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, ch: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, ch, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


def default_channels(resolution: int, channel_multiplier: int = 2, divisor: int = 1) -> Dict[int, int]:
    """rosinality's channel table, optionally narrowed by `divisor` (for small test models)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
             128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
             512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    out = {}
    r = 4
    while r <= resolution:
        out[r] = max(1, table.get(r, 16 * channel_multiplier) // divisor)
        r *= 2
    return out


class Generator(nn.Module):
    """rosinality's generator; the keyword arguments after `kernel_size` describe generators
    converted from NVIDIA's stylegan2-ada-pytorch (`stylegan2_nvidia.py`), whose defaults give
    rosinality's: `mapping_dims` the mapping's feature sizes ([z_dim + embed, ..., w_dim];
    default w_dim throughout), `c_dim` the class count of a conditional generator (its label is
    embedded by `embed` and joined to z, `training/networks.py` MappingNetwork), and `conv_clamp`
    the activation clamp (< 0: none)."""

    def __init__(self, resolution: int, w_dim: int, n_mlp: int, channels: Dict[int, int],
                 lr_mlp: float = 0.01, blur_kernel: List[float] = [1.0, 3.0, 3.0, 1.0],
                 kernel_size: int = 3, mapping_dims: Optional[List[int]] = None, c_dim: int = 0,
                 conv_clamp: float = -1.0):
        super().__init__()
        log_size = int(round(math.log2(resolution)))
        if 2**log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        if mapping_dims is None:
            mapping_dims = [w_dim] * (n_mlp + 1)
        if len(mapping_dims) != n_mlp + 1 or mapping_dims[-1] != w_dim:
            raise ValueError(f"mapping sizes {mapping_dims} do not end in w_dim {w_dim} after "
                             f"{n_mlp} layers")
        self.resolution = resolution
        self.w_dim = w_dim
        self.c_dim = c_dim
        embed_dim = w_dim if c_dim > 0 else 0
        self.z_dim = mapping_dims[0] - embed_dim
        self.n_mlp = n_mlp
        self.num_ws = log_size * 2 - 2
        self.num_conv_layers = (log_size - 2) * 2

        layers: List[nn.Module] = [PixelNorm()]
        for i in range(n_mlp):
            layers.append(EqualLinear(mapping_dims[i], mapping_dims[i + 1], lr_mul=lr_mlp,
                                      lrelu=True))
        self.style = nn.Sequential(*layers)
        # The class label's embedding: a plain (linear, lr 1) layer in NVIDIA's mapping network.
        self.embed = EqualLinear(c_dim, embed_dim) if c_dim > 0 else nn.Identity()

        clamp = conv_clamp
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], kernel_size, w_dim, 4, False, blur_kernel,
                                clamp)
        self.to_rgb1 = ToRGB(channels[4], w_dim, False, blur_kernel, clamp)

        convs = []
        to_rgbs = []
        in_ch = channels[4]
        for i in range(3, log_size + 1):
            out_ch = channels[2**i]
            convs.append(StyledConv(in_ch, out_ch, kernel_size, w_dim, 2**i, True, blur_kernel,
                                    clamp))
            convs.append(StyledConv(out_ch, out_ch, kernel_size, w_dim, 2**i, False, blur_kernel,
                                    clamp))
            to_rgbs.append(ToRGB(out_ch, w_dim, True, blur_kernel, clamp))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(to_rgbs)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    # ---- methods called from C++ ------------------------------------------------------------

    @torch.jit.export
    def mapping(self, z: Tensor) -> Tensor:
        return self.style(z)

    @torch.jit.export
    def mapping_conditional(self, z: Tensor, c: Tensor) -> Tensor:
        """z [B, z_dim], one-hot label c [B, c_dim] -> w. NVIDIA's MappingNetwork normalises z
        and the embedded label to unit second moment each, then joins them (c ignored when the
        generator is unconditional)."""
        if self.c_dim == 0:
            return self.style(z)
        y = self.embed(c)
        x = torch.cat([z * torch.rsqrt(torch.mean(z * z, dim=1, keepdim=True) + 1e-8),
                       y * torch.rsqrt(torch.mean(y * y, dim=1, keepdim=True) + 1e-8)], dim=1)
        for i, layer in enumerate(self.style):
            if i > 0:  # the first is the PixelNorm of z, done above
                x = layer(x)
        return x

    @torch.jit.export
    def styles(self, ws: Tensor) -> List[Tensor]:
        """W+ -> S, each [B, C]: the modulation outputs (with rosinality's +1 bias baked in).

        Row use (§8): conv1 row 0, to_rgb1 row 1; per resolution k: convs[2k] row 2k+1,
        convs[2k+1] row 2k+2, to_rgbs[k] row 2k+3.
        """
        conv_s: List[Tensor] = []
        for i, conv in enumerate(self.convs):
            conv_s.append(conv.conv.modulation(ws[:, i + 1]))
        rgb_s: List[Tensor] = []
        for k, rgb in enumerate(self.to_rgbs):
            rgb_s.append(rgb.conv.modulation(ws[:, 2 * k + 3]))
        out = [self.conv1.conv.modulation(ws[:, 0]), self.to_rgb1.conv.modulation(ws[:, 1])]
        for k in range(len(rgb_s)):
            out.append(conv_s[2 * k])
            out.append(conv_s[2 * k + 1])
            out.append(rgb_s[k])
        return out

    @torch.jit.export
    def synthesis_from_styles(self, styles: List[Tensor], randomize_noise: bool = False) -> Tensor:
        batch = styles[0].shape[0]
        x = self.conv1(self.input(batch), styles[0], randomize_noise)
        skip = self.to_rgb1(x, styles[1], x)
        # The conv chain first (keeping each resolution's features), then the toRGB chain:
        # TorchScript cannot index a ModuleList with a computed index, and toRGB at each
        # resolution needs only that resolution's features and the previous skip.
        feats: List[Tensor] = []
        for i, conv in enumerate(self.convs):
            x = conv(x, styles[2 + 3 * (i // 2) + (i % 2)], randomize_noise)
            if i % 2 == 1:
                feats.append(x)
        for k, rgb in enumerate(self.to_rgbs):
            skip = rgb(feats[k], styles[4 + 3 * k], skip)
        return skip

    @torch.jit.export
    def synthesis_prefix(self, styles: List[Tensor], upto: int) -> List[Tensor]:
        """The work that does not depend on the style layers of `convs[upto]` and after (fixed
        noise): [input of convs[upto], conv1's output, each finished resolution's features].
        Global-direction preparation computes it once per image and reuses it for every channel
        of a later layer (docs/algorithms.md §3.3 perturbs one layer at a time)."""
        batch = styles[0].shape[0]
        x = self.conv1(self.input(batch), styles[0], False)
        out: List[Tensor] = [x, x]
        for i, conv in enumerate(self.convs):
            if i < upto:
                x = conv(x, styles[2 + 3 * (i // 2) + (i % 2)], False)
                if i % 2 == 1:
                    out.append(x)
        out[0] = x
        return out

    @torch.jit.export
    def synthesis_suffix(self, prefix: List[Tensor], upto: int, styles: List[Tensor]) -> Tensor:
        """Finishes `synthesis_prefix(styles', upto)` with `styles` (which may differ from
        styles' in the layers of convs[upto] and after, and in every toRGB layer)."""
        x = prefix[0]
        feats: List[Tensor] = prefix[2:]
        for i, conv in enumerate(self.convs):
            if i >= upto:
                x = conv(x, styles[2 + 3 * (i // 2) + (i % 2)], False)
                if i % 2 == 1:
                    feats.append(x)
        skip = self.to_rgb1(prefix[1], styles[1], prefix[1])
        for k, rgb in enumerate(self.to_rgbs):
            skip = rgb(feats[k], styles[4 + 3 * k], skip)
        return skip

    @torch.jit.export
    def synthesis(self, ws: Tensor, randomize_noise: bool = False) -> Tensor:
        return self.synthesis_from_styles(self.styles(ws), randomize_noise)

    def forward(self, ws: Tensor) -> Tensor:
        return self.synthesis(ws, False)


# ---- rosinality state dicts ----------------------------------------------------------------


def _noise_key_map(num_conv_layers: int) -> Dict[str, str]:
    """rosinality `noises.noise_{i}` -> our per-layer buffer (i = 0 is conv1)."""
    m = {"noises.noise_0": "conv1.noise.const"}
    for i in range(num_conv_layers):
        m[f"noises.noise_{i + 1}"] = f"convs.{i}.noise.const"
    return m


def config_from_state_dict(sd: Dict[str, Tensor]) -> dict:
    """Every size of the generator, read from tensor shapes (nothing hard-coded)."""
    if "input.input" not in sd or "style.1.weight" not in sd:
        raise ValueError("not a rosinality StyleGAN2 generator state dict "
                         "(no 'input.input' / 'style.1.weight')")
    w_dim = sd["style.1.weight"].shape[1]
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    n_convs = 0
    while f"convs.{n_convs}.conv.weight" in sd:
        n_convs += 1
    if n_convs % 2 != 0 or n_convs == 0:
        raise ValueError(f"expected an even, non-zero number of 'convs.*' layers, found {n_convs}")
    log_size = n_convs // 2 + 2
    channels = {4: int(sd["input.input"].shape[1])}
    for k in range(n_convs // 2):
        channels[2 ** (k + 3)] = int(sd[f"convs.{2 * k}.conv.weight"].shape[1])
    kernel_size = int(sd["conv1.conv.weight"].shape[-1])
    blur = sd.get("convs.0.conv.blur.kernel")
    return {
        "resolution": 2**log_size,
        "w_dim": int(w_dim),
        "z_dim": int(w_dim),
        "n_mlp": n_mlp,
        "num_ws": log_size * 2 - 2,
        "channels": channels,
        "kernel_size": kernel_size,
        "blur_kernel_size": int(blur.shape[0]) if blur is not None else 4,
    }


def build_generator(sd: Dict[str, Tensor], latent_avg, lr_mlp: float = 0.01) -> Generator:
    """Builds our Generator from a rosinality `g_ema` state dict, loading every tensor strictly."""
    cfg = config_from_state_dict(sd)
    # The blur taps themselves are loaded from the checkpoint's buffers; only their count matters
    # for construction (padding).
    blur = [1.0] * cfg["blur_kernel_size"]
    g = Generator(cfg["resolution"], cfg["w_dim"], cfg["n_mlp"], cfg["channels"], lr_mlp=lr_mlp,
                  blur_kernel=blur, kernel_size=cfg["kernel_size"])
    mapping = _noise_key_map(g.num_conv_layers)
    own = g.state_dict()
    remapped = OrderedDict()
    unused = []
    for key, value in sd.items():
        name = mapping.get(key, key)
        if name not in own:
            unused.append(key)
            continue
        if tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(f"tensor '{key}' has shape {list(value.shape)}, "
                             f"expected {list(own[name].shape)}")
        remapped[name] = value.float()
    if latent_avg is None:
        raise ValueError("no latent_avg given")
    remapped["w_avg"] = latent_avg.float().reshape(-1)
    missing = [k for k in own if k not in remapped]
    if unused or missing:
        raise ValueError(f"checkpoint does not match the generator: unused keys {unused[:8]}, "
                         f"missing keys {missing[:8]}")
    g.load_state_dict(remapped, strict=True)
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    return g


def to_rosinality_state_dict(g: Generator) -> "OrderedDict[str, Tensor]":
    """The inverse of `build_generator`'s name mapping (for writing random test checkpoints)."""
    inverse = {v: k for k, v in _noise_key_map(g.num_conv_layers).items()}
    sd = OrderedDict()
    for key, value in g.state_dict().items():
        if key == "w_avg":
            continue
        sd[inverse.get(key, key)] = value.clone()
    return sd


def random_checkpoint(resolution: int, w_dim: int, n_mlp: int, channel_multiplier: int = 2,
                      channel_divisor: int = 1, seed: int = 0, lr_mlp: float = 0.01) -> dict:
    """A rosinality-format checkpoint with random weights of any size, for tests and benchmarks.

    Biases, noise strengths and activations are perturbed away from their init values so that no
    term is trivially zero; `latent_avg` is the mean of 4096 mapped samples, as rosinality does.
    """
    torch.manual_seed(seed)
    channels = default_channels(resolution, channel_multiplier, channel_divisor)
    g = Generator(resolution, w_dim, n_mlp, channels, lr_mlp=lr_mlp)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.copy_(torch.rand_like(p) * 0.2)
            elif name.endswith("activate.bias") or name.endswith("bias") and "to_rgb" in name:
                p.copy_(torch.randn_like(p) * 0.1)
            elif name.endswith("modulation.bias"):
                p.add_(torch.randn_like(p) * 0.1)
        latent_avg = g.mapping(torch.randn(4096, w_dim)).mean(0)
    return {"g_ema": to_rosinality_state_dict(g), "latent_avg": latent_avg}


def style_dims(g: Generator) -> List[int]:
    dims = [g.conv1.conv.in_ch, g.to_rgb1.conv.in_ch]
    for k, rgb in enumerate(g.to_rgbs):
        dims += [g.convs[2 * k].conv.in_ch, g.convs[2 * k + 1].conv.in_ch, rgb.conv.in_ch]
    return dims


def style_is_rgb(g: Generator) -> List[bool]:
    n = 2 + 3 * len(g.to_rgbs)
    return [i == 1 or (i >= 2 and (i - 2) % 3 == 2) for i in range(n)]
