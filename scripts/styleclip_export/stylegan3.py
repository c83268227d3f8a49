"""A scriptable StyleGAN3 generator (configs T and R), and its conversion from NVIDIA's network
pickles.

Sources: the paper (Karras, Aittala, Laine, Härkönen, Hellsten, Lehtinen, Aila, "Alias-Free
Generative Adversarial Networks", NeurIPS 2021; §3 and Appendices C–F for the layers, filters and
sizes) and facts about NVlabs/stylegan3's public `training/networks_stylegan3.py`,
`torch_utils/ops/filtered_lrelu.py` (its reference path `_filtered_lrelu_ref`) and
`torch_utils/ops/upfirdn2d.py` (parameter names, attribute names and formulas). No NVIDIA code is
used or run: the pickle is read by `safe_pickle` as recorded data. docs/stylegan3.md states what
is computed, in prose.

The module has the method names and signatures of `stylegan2.Generator`, so the C++ side loads
either. The style space of StyleGAN3 is laid out as (docs/stylegan3.md §3):

* entry 0: the input layer's transform affine, 4 numbers (r_c, r_s, t_x, t_y), raw; not a style
  channel (nothing should edit it), but synthesis from styles needs it;
* entries 1 .. num_layers: each synthesis layer's affine output (its input channels);
* entry num_layers + 1: ToRGB's affine output, before ToRGB's weight gain.

Entry i uses W+ row i; `num_ws` = num_layers + 2 (16 for every published StyleGAN3).

Every size and every filter of a converted generator is taken from the pickle (recorded init
arguments, attributes and buffers); nothing is re-designed. `random_generator` designs them the
way the paper's Appendix C describes, with numpy only, for tests and benchmarks.
"""

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NotAGenerator(ValueError):
    """The pickle holds no generator this module can represent (exit 3 at the command line)."""


# ---- filter design (Appendix C; numpy only, for random generators) --------------------------

def kaiser_atten(numtaps: int, width: float) -> float:
    """Kaiser's empirical attenuation (dB) of a `numtaps` filter with transition width `width`
    (a fraction of the Nyquist frequency); the formula scipy.signal.kaiser_atten uses."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser's window parameter for a stop-band attenuation in dB (Kaiser 1974; as in
    scipy.signal.kaiser_beta)."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """J1 from Bessel's integral J1(x) = 1/(2π) ∫_0^2π cos(τ − x sin τ) dτ. The integrand is
    2π-periodic, so the trapezoidal rule converges geometrically: 512 nodes are exact to double
    precision well past the arguments the filters need (|x| < 100)."""
    tau = np.arange(512) * (2 * np.pi / 512)
    x = np.asarray(x, dtype=np.float64)
    return np.cos(tau - x[..., None] * np.sin(tau)).mean(axis=-1)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[np.ndarray]:
    """The paper's low-pass filters (Appendix C.1, C.5): a Kaiser-windowed sinc, used separably
    ([numtaps]); or, for StyleGAN3-R's downsampling, the radially symmetric jinc with the outer
    product of two Kaiser windows ([numtaps, numtaps]). `cutoff` and the transition `width` are in
    the same units as the sampling rate `fs`. Sums to 1. None for a single tap (identity).

    The separable design is the windowed-sinc method with Kaiser's formulas (what
    scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs) computes, normalised to unit DC gain).
    """
    if numtaps < 1:
        raise ValueError("a filter needs at least one tap")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyq
        f = c * np.sinc(c * m) * window
        return (f / f.sum()).astype(np.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = bessel_j1(2 * cutoff * np.pi * r) / (np.pi * r)
    f[r == 0] = cutoff  # the limit of J1(2πcr)/(πr) at r = 0
    f *= np.outer(window, window)
    return (f / f.sum()).astype(np.float32)


# ---- network sizes (§3, Appendix F: the geometric progressions of cutoffs and stopbands) ------

def network_spec(resolution: int, channel_base: int = 32768, channel_max: int = 512,
                 num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2.0,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                 margin_size: int = 10, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False,
                 img_channels: int = 3, num_fp16_res: int = 4) -> dict:
    """Every size of a StyleGAN3 synthesis network, computed as the paper's Appendix F describes
    (and NVIDIA's SynthesisNetwork / SynthesisLayer constructors record): per layer i the cutoff
    f_c and minimum stopband f_t follow geometric progressions from the first layer to the last
    critically sampled ones; the sampling rate is the smallest power of two ≥ 2 f_t (at most the
    resolution); the transition half-width is max(f_t, s/2) − f_c; sizes add a margin of
    `margin_size` samples on each side except the last two layers; channels are
    min(channel_base / 2 / f_c, channel_max). Filters are designed with `design_lowpass_filter`.
    Returns {"input": {...}, "layers": [{...} for layers 0 .. num_layers (the last is ToRGB)]}."""
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    spec = {
        "input": {"channels": int(channels[0]), "size": int(sizes[0]),
                  "sampling_rate": float(rates[0]), "bandwidth": float(cutoffs[0])},
        "layers": [],
        "num_layers": num_layers, "num_critical": num_critical, "margin_size": margin_size,
        "resolution": resolution, "img_channels": img_channels,
    }
    for idx in range(num_layers + 1):
        prev = max(idx - 1, 0)
        torgb = idx == num_layers
        critical = idx >= num_layers - num_critical
        in_rate, out_rate = int(rates[prev]), int(rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if torgb else lrelu_upsampling)
        kernel = 1 if torgb else conv_kernel
        up = int(round(tmp_rate / in_rate))
        down = int(round(tmp_rate / out_rate))
        up_taps = filter_size * up if up > 1 and not torgb else 1
        down_taps = filter_size * down if down > 1 and not torgb else 1
        radial = use_radial_filters and not critical
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        # Padding of the upsampled image: what the downsampling needs to give out_size samples,
        # less what the upsampled convolution output offers once both filters have taken their
        # taps − 1; split so that the output samples sit at the centres of the input's pixels
        # (Appendix C.3's symmetric interpretation: half an input pixel is up/2 upsampled ones).
        wanted = (out_size - 1) * down + 1
        offered = (in_size + kernel - 1) * up - (up_taps - 1) - (down_taps - 1)
        pad_lo = (wanted - offered + up) // 2
        pad_hi = wanted - offered - pad_lo
        spec["layers"].append({
            "is_torgb": torgb, "is_critically_sampled": critical,
            "use_fp16": bool(rates[idx] * (2 ** num_fp16_res) > resolution),
            "in_channels": int(channels[prev]), "out_channels": int(channels[idx]),
            "in_size": in_size, "out_size": out_size,
            "in_sampling_rate": in_rate, "out_sampling_rate": out_rate, "tmp_sampling_rate": tmp_rate,
            "in_cutoff": float(cutoffs[prev]), "out_cutoff": float(cutoffs[idx]),
            "in_half_width": float(half_widths[prev]), "out_half_width": float(half_widths[idx]),
            "conv_kernel": kernel, "up_factor": up, "up_taps": up_taps, "down_factor": down,
            "down_taps": down_taps, "down_radial": radial,
            "padding": [int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)],
            "up_filter": design_lowpass_filter(up_taps, float(cutoffs[prev]),
                                               float(half_widths[prev]) * 2, tmp_rate),
            "down_filter": design_lowpass_filter(down_taps, float(cutoffs[idx]),
                                                 float(half_widths[idx]) * 2, tmp_rate, radial),
        })
    return spec


# ---- resampling: upfirdn2d, in plain PyTorch --------------------------------------------------

def polyphase_plan(g: np.ndarray, up: int, n_in: int, pad0: int, pad1: int):
    """One axis of upfirdn2d (insert up − 1 zeros after every sample, pad by pad0/pad1 — negative
    crops — and correlate with the taps g) as `up` short correlations of the input itself, one per
    output phase, so that the zeros are never stored or multiplied (the polyphase decomposition of
    an interpolating filter).

    Output j reads input n with tap g[up·n + pad0 − j]. Writing j − pad0 = up·q + r (0 ≤ r < up),
    output j = Σ_m x[q + m] · h[r, m] with h[r, m] = g[up·m − r]. The phases are computed for
    q = q0 .. q1 from the input padded by `lead` before and `trail` after (negative: cropped),
    interleaved (phase fastest), and the interleaved sequence from `start` on, of length `n_out`,
    is the result. Returns (h [up, taps], lead, trail, start, n_out)."""
    taps_total = len(g)
    n_out = n_in * up + pad0 + pad1 - taps_total + 1
    taps = (taps_total - 1 + up - 1) // up + 1
    h = np.zeros((up, taps), dtype=np.float64)
    for r in range(up):
        for m in range(taps):
            k = up * m - r
            if 0 <= k < taps_total:
                h[r, m] = g[k]
    q0 = (-pad0) // up
    q1 = (n_out - 1 - pad0) // up
    lead = -q0
    trail = q1 + taps - n_in
    start = -pad0 - up * q0
    return h, lead, trail, start, n_out


class FullyConnected(nn.Module):
    """NVIDIA's FullyConnectedLayer: y = x·(W·weight_gain)ᵀ + b·bias_gain, then for the mapping
    layers leaky ReLU (slope 0.2) times √2 (`bias_act`'s 'lrelu'). The gains are the pickle's
    recorded `weight_gain` (lr_multiplier / √in) and `bias_gain` (lr_multiplier)."""

    def __init__(self, in_features: int, out_features: int, weight_gain: float, bias_gain: float,
                 lrelu: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = float(weight_gain)
        self.bias_gain = float(bias_gain)
        self.lrelu = lrelu

    def forward(self, x: Tensor) -> Tensor:
        x = torch.addmm(self.bias * self.bias_gain, x, (self.weight * self.weight_gain).t())
        if self.lrelu:
            x = F.leaky_relu(x, 0.2) * 1.4142135623730951
        return x


class SynthesisInput(nn.Module):
    """The Fourier-feature input (§3.1, Appendix D; NVIDIA's SynthesisInput): `channels` sinusoids
    with fixed frequencies `freqs` [C, 2] and phases `phases` [C], sampled on a `size`² grid at
    `sampling_rate` samples per unit (the grid covers size / sampling_rate units about the origin,
    pixel centres at (j + ½ − size/2) / sampling_rate), mixed by `weight` [C, C] / √C.

    The 4 affine outputs t = (r_c, r_s, t_x, t_y), divided by |(r_c, r_s)|, give an inverse
    rotation M_r = [[r_c, −r_s, 0], [r_s, r_c, 0], [0, 0, 1]] and inverse translation
    M_t = [[1, 0, −t_x], [0, 1, −t_y], [0, 0, 1]]; with the user's `transform` U (an inverse
    transform of the resulting image, identity by default) the features are
    sin(2π (f·(T x)_xy + p)) for T = M_r·M_t·U, i.e. phases p + f·T[:2, 2] and frequencies f·T[:2, :2];
    each frequency's amplitude is 1 − (|f'| − bandwidth) / (sampling_rate/2 − bandwidth), clamped
    to [0, 1], which fades out frequencies that a user transform pushed beyond the band."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels = channels
        self.size = size
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        self.weight = nn.Parameter(torch.zeros(channels, channels))
        self.affine = FullyConnected(w_dim, 4, 1.0 / math.sqrt(w_dim), 1.0)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(channels, 2))
        self.register_buffer("phases", torch.zeros(channels))
        # The sampling grid, as F.affine_grid(align_corners=False) makes it with the scale
        # 0.5·size/sampling_rate (the upstream code builds it that way): [size·size, 2], (x, y).
        theta = torch.tensor([[0.5 * size / sampling_rate, 0.0, 0.0],
                              [0.0, 0.5 * size / sampling_rate, 0.0]], dtype=torch.float32)
        grid = F.affine_grid(theta[None], [1, 1, size, size], align_corners=False)
        self.register_buffer("grid", grid.reshape(size * size, 2))

    def forward(self, t: Tensor) -> Tensor:
        """t: the raw affine output [B, 4] (style entry 0) -> features [B, C, size, size]."""
        b = t.shape[0]
        t = t / t[:, :2].norm(2, [1], True)
        c, s, tx, ty = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
        zero = torch.zeros_like(c)
        one = torch.ones_like(c)
        # M_r · M_t, written out (rows): [[c, −s, −c·tx + s·ty], [s, c, −s·tx − c·ty], [0, 0, 1]].
        m = torch.stack([torch.stack([c, -s, s * ty - c * tx], 1),
                         torch.stack([s, c, -s * tx - c * ty], 1),
                         torch.stack([zero, zero, one], 1)], 1)  # [B, 3, 3]
        m = torch.matmul(m, self.transform.to(t.dtype).unsqueeze(0))
        phases = self.phases.unsqueeze(0) + torch.matmul(self.freqs.unsqueeze(0), m[:, :2, 2:]).squeeze(2)
        freqs = torch.matmul(self.freqs.unsqueeze(0), m[:, :2, :2])  # [B, C, 2]
        amplitudes = (1 - (freqs.norm(2, [2]) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        x = torch.matmul(self.grid.unsqueeze(0), freqs.transpose(1, 2))  # [B, size², C]
        x = torch.sin((x + phases.unsqueeze(1)) * (math.pi * 2)) * amplitudes.unsqueeze(1)
        x = torch.matmul(x, (self.weight / math.sqrt(self.channels)).t())
        # [B, size², C] is a channels-last image: the layers keep that layout (SynthesisLayer).
        return x.reshape(b, self.size, self.size, self.channels).permute(0, 3, 1, 2)


def strip_plan(f_up: np.ndarray, up: int, n_in: int, pad0: int, f_down: np.ndarray, down: int,
               n_out: int, gain: float, row_bytes: int, budget: int = 64 << 20,
               max_rows: int = 8):
    """The row (y) passes of a layer's filtered leaky ReLU, cut into strips of output rows.

    Along y, upsampling by `up` with the taps f_up (zero insertion, padding pad0 before, the
    filter with gain `up`) and the downsampling filter are each a banded matrix acting on image
    rows; on a channels-last image a row is one contiguous vector, so each strip's pass is one
    small matrix product (GEMM) with a [rows out, rows in] matrix, and the upsampled rows of a strip
    (at most `max_rows` output rows, fewer where the upsampled rows would pass `budget` bytes) are
    made, rectified and consumed before the next strip's: the largest tensor of the layer (2× or 4×
    the output in each direction) never exists whole. Taller strips recompute fewer rows at their
    edges (2·rows + Ld − 2 upsampled rows make `rows` output rows) but make each GEMM's inner
    dimension (the input rows, about that / up + taps) longer, of which only `taps` are non-zero:
    4 to 32 rows rendered within a few per cent of each other at 1024 px on an x86 CPU, 8 best.

    tmp row j = Σ_i A[i]·g[up·i + pad0 − j] (g: f_up reversed, times `up` and the activation
    `gain`, which commutes with leaky ReLU); output row k = Σ_t tmp[down·k + t]·f_down[Ld − 1 − t].
    Returns (rows per strip, [(i0, i1, U [nj, ni], D [nk, nj] or None)]) with strip s covering
    output rows s·rows .. and tmp rows down·k0 .. down·(k1 − 1) + Ld."""
    g = np.asarray(f_up, dtype=np.float64)[::-1] * up * gain
    lu = len(g)
    ld = f_down.shape[0]
    gd = np.asarray(f_down, dtype=np.float64)[::-1] if f_down.ndim == 1 else None
    rows = int((budget / max(row_bytes, 1) - ld) // down)
    rows = max(1, min(rows, max_rows, n_out))
    strips = []
    for k0 in range(0, n_out, rows):
        k1 = min(k0 + rows, n_out)
        j0, j1 = down * k0, down * (k1 - 1) + ld
        i0 = max(0, -((pad0 - j0) // up))
        i1 = max(i0, min(n_in, (j1 - 1 - pad0 + lu - 1) // up + 1))
        t = up * np.arange(i0, i1)[None, :] + pad0 - np.arange(j0, j1)[:, None]
        u_mat = np.where((t >= 0) & (t < lu), g[np.clip(t, 0, lu - 1)], 0.0)
        d_mat = None
        if gd is not None:
            d_mat = np.zeros((k1 - k0, j1 - j0))
            for k in range(k0, k1):
                d_mat[k - k0, down * k - j0:down * k - j0 + ld] = gd
        strips.append((i0, i1, u_mat, d_mat))
    return rows, strips


class SynthesisLayer(nn.Module):
    """One StyleGAN3 layer (§3.2; NVIDIA's SynthesisLayer): modulated convolution, then the
    filtered leaky ReLU of Appendix C: bias, upsample ×up with `up_filter` (separable, gain up²),
    leaky ReLU (slope 0.2) × √2, clamp to ±conv_clamp, low-pass with `down_filter` (separable for
    T and for R's critically sampled layers; 2-D radial for R's others) keeping every down-th
    sample; the recorded `padding` of the upsampled image makes the result exactly `out_size`
    samples. The last layer is ToRGB: a 1×1 modulated convolution without demodulation, its styles
    times 1/√(in_channels·k²), then bias and clamp only.

    The convolution's input is divided by √magnitude_ema (NVIDIA: `input_gain =
    magnitude_ema.rsqrt()`, applied to the weights after demodulation, so it is not normalised
    away): the moving average of the input's mean square recorded in training.

    How it is computed (the same numbers as zero insertion and full convolutions; docs/stylegan3.md
    §5 on speed): images are channels-last; the column (x) upsampling runs as `up` short depthwise
    convolutions, one per output phase (`polyphase_plan`), interleaved; the row passes are strips of
    small matrix products (`strip_plan`); the column downsampling is a strided depthwise
    convolution (R's 2-D filter: a strided 2-D depthwise convolution of each strip).
    """

    # Strip plan (strip_plan): first input row, input rows, upsampled rows, output rows per strip;
    # empty for ToRGB, hence declared for TorchScript.
    strip_i0: List[int]
    strip_ni: List[int]
    strip_nj: List[int]
    strip_nk: List[int]

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, in_size: int,
                 out_size: int, conv_kernel: int, is_torgb: bool, up: int, down: int,
                 padding: List[int], up_filter: Optional[Tensor], down_filter: Optional[Tensor],
                 conv_clamp: Optional[float], affine_weight_gain: float, affine_bias_gain: float):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = in_size
        self.out_size = out_size
        self.conv_kernel = conv_kernel
        self.is_torgb = is_torgb
        self.up = up
        self.down = down
        self.padding = [int(p) for p in padding]
        self.clamp = -1.0 if conv_clamp is None else float(conv_clamp)
        self.gain = 1.0 if is_torgb else math.sqrt(2)
        self.slope = 1.0 if is_torgb else 0.2
        self.torgb_gain = 1.0 / math.sqrt(in_channels * conv_kernel ** 2)
        self.affine = FullyConnected(w_dim, in_channels, affine_weight_gain, affine_bias_gain)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, conv_kernel, conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        # The pickle's filters as recorded (empty: none).
        self.register_buffer("up_filter", torch.zeros(0) if up_filter is None else up_filter.float().clone())
        self.register_buffer("down_filter", torch.zeros(0) if down_filter is None else down_filter.float().clone())

        conv_size = in_size + conv_kernel - 1
        px0, px1, py0, py1 = self.padding
        has_up = up_filter is not None and up_filter.numel() > 0
        has_down = down_filter is not None and down_filter.numel() > 0
        self.up_x = [0, 0, 0, 0]  # lead, trail, start, n_out of the column upsampling
        self.down_radial = False
        self.strip_i0: List[int] = []
        self.strip_ni: List[int] = []
        self.strip_nj: List[int] = []
        self.strip_nk: List[int] = []
        if is_torgb:
            # NVIDIA's ToRGB: no filters, up = down = 1, no padding (bias and clamp only).
            if has_up or has_down or up != 1 or down != 1 or any(self.padding):
                raise NotAGenerator("its ToRGB layer resamples; StyleGAN3's does not")
            if conv_size != out_size:
                raise NotAGenerator(f"its ToRGB layer maps {conv_size}² to {out_size}²")
            self.register_buffer("up_taps", torch.zeros(1, 1))
            self.register_buffer("down_taps", torch.zeros(1, 1))
            self.register_buffer("strip_up", torch.zeros(1, 1, 1))
            self.register_buffer("strip_down", torch.zeros(1, 1, 1))
            return
        if not has_up or up_filter.dim() != 1 or not has_down or down_filter.dim() not in (1, 2):
            raise NotAGenerator("a synthesis layer's filters are not StyleGAN3's (a separable "
                                "upsampling filter and a separable or 2-D downsampling filter)")
        if down_filter.dim() == 2 and down_filter.shape[0] != down_filter.shape[1]:
            raise NotAGenerator("a 2-D downsampling filter is not square")
        # Columns: upsampling as `up` phases (correlation with the reversed taps, the gain up² of
        # upfirdn2d split as `up` per axis).
        g = up_filter.double().flip(0).numpy() * up
        h, *plan_x = polyphase_plan(g, up, conv_size, px0, px1)
        self.up_x = [int(v) for v in plan_x]
        self.register_buffer("up_taps", torch.from_numpy(h).float())
        n_tmp_x = self.up_x[3]
        fd = down_filter.double().numpy()
        ld = fd.shape[0]
        self.down_radial = fd.ndim == 2
        # Downsampling taps as a correlation: reversed (separable: the columns' taps; 2-D: the
        # whole filter reversed in both directions).
        self.register_buffer("down_taps", torch.from_numpy(
            (fd[::-1, ::-1] if self.down_radial else fd[::-1][None, :]).copy()).float())
        n_x = (n_tmp_x - ld) // down + 1
        # Rows: strips of GEMMs (strip_plan); the activation gain is folded into the up matrix.
        n_tmp_y = conv_size * up + py0 + py1 - len(g) + 1
        n_y = (n_tmp_y - ld) // down + 1
        if n_x != out_size or n_y != out_size:
            raise NotAGenerator(f"a layer's filters and padding give {n_x}×{n_y} samples, not its "
                                f"recorded size {out_size}")
        _, strips = strip_plan(up_filter.double().numpy(), up, conv_size, py0, fd, down, out_size,
                               self.gain, n_tmp_x * out_channels * 4)
        max_ni = max(1, max(s[1] - s[0] for s in strips))
        max_nj = max(s[2].shape[0] for s in strips)
        max_nk = max(s[3].shape[0] for s in strips) if not self.down_radial else 1
        up_mats = torch.zeros(len(strips), max_nj, max_ni)
        down_mats = torch.zeros(len(strips), max_nk if not self.down_radial else 1,
                                max_nj if not self.down_radial else 1)
        for s, (i0, i1, u_mat, d_mat) in enumerate(strips):
            self.strip_i0.append(int(i0))
            self.strip_ni.append(int(i1 - i0))
            self.strip_nj.append(int(u_mat.shape[0]))
            nk = (u_mat.shape[0] - ld) // down + 1
            self.strip_nk.append(int(nk))
            up_mats[s, :u_mat.shape[0], :u_mat.shape[1]] = torch.from_numpy(u_mat)
            if d_mat is not None:
                down_mats[s, :d_mat.shape[0], :d_mat.shape[1]] = torch.from_numpy(d_mat)
        self.register_buffer("strip_up", up_mats)
        self.register_buffer("strip_down", down_mats)

    # -- modulated convolution (StyleGAN2 §2.2 with StyleGAN3's input gain) --------------------

    def modulated_conv(self, x: Tensor, s: Tensor) -> Tensor:
        """x [B, in, H, W], raw styles s [B, in] -> [B, out, H + k − 1, W + k − 1].

        Demodulated layers: NVIDIA first scales each output filter and the styles to unit RMS;
        those factors cancel in the demodulation (up to its 1e-8), as does any scale of s. Here
        the styles are scaled per sample (NVIDIA: by one RMS over the whole batch), so that an
        image never depends on its batch-mates."""
        b = x.shape[0]
        input_gain = torch.rsqrt(self.magnitude_ema)
        weight = self.weight
        if self.is_torgb:
            s = s * self.torgb_gain
        else:
            weight = weight * torch.rsqrt(weight.square().mean([1, 2, 3], keepdim=True))
            s = s * torch.rsqrt(s.square().mean(dim=1, keepdim=True))
        pad = self.conv_kernel - 1
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)
        if wants_grad or b > 1:
            # conv(x·s, W)·d: one ordinary convolution for the batch; a gradient with respect to
            # s needs no weight-gradient convolution (see stylegan2.ModulatedConv2d).
            out = F.conv2d(x * (s * input_gain).reshape(b, self.in_channels, 1, 1), weight,
                           padding=pad)
            if self.is_torgb:
                return out
            w2 = weight.square().sum([2, 3])  # [out, in]
            d = torch.rsqrt(torch.matmul(s.square(), w2.t()) + 1e-8)  # [B, out]
            return out * d.reshape(b, self.out_channels, 1, 1)
        # One image: modulate the weights (NVIDIA's fused form), no extra pass over x. x is used
        # as it is: reshaping a channels-last image, even to its own shape, copies it to the
        # default layout, and the convolution's output would follow.
        w = weight * s.reshape(1, self.in_channels, 1, 1)
        if not self.is_torgb:
            w = w * torch.rsqrt(w.square().sum([1, 2, 3], keepdim=True) + 1e-8)
        return F.conv2d(x, w * input_gain, padding=pad)

    # -- filtered leaky ReLU (Appendix C; NVIDIA's _filtered_lrelu_ref order) -------------------

    def upsample_columns(self, x: Tensor) -> Tensor:
        """x [1, C, H, W] (channels-last) -> the column-upsampled image as a channels-last
        matrix [H, W_tmp·C]: `up` depthwise convolutions of x (one per phase, polyphase_plan),
        interleaved phase-fastest, cropped to the plan's n_out columns."""
        c, h = x.shape[1], x.shape[2]
        up = self.up
        taps = self.up_taps.shape[1]
        lead, trail, start, n_out = self.up_x[0], self.up_x[1], self.up_x[2], self.up_x[3]
        pad = max(lead, trail, 0)
        nq = x.shape[3] + lead + trail - taps + 1
        phases: List[Tensor] = []
        for r in range(up):
            k = self.up_taps[r].reshape(1, 1, 1, taps).repeat(c, 1, 1, 1).to(x.dtype)
            y = F.conv2d(x, k, padding=[0, pad], groups=c)
            phases.append(y[:, :, :, pad - lead:pad - lead + nq].permute(0, 2, 3, 1))
        a = torch.stack(phases, 3).reshape(h, nq * up, c)  # [H, q, phase, C] -> [H, q·up, C]
        return a[:, start:start + n_out].reshape(h, n_out * c)

    def filter_one(self, x: Tensor) -> Tensor:
        """The filtered leaky ReLU of one image x [1, C, H, W] (bias already added)."""
        c = x.shape[1]
        inplace = not (torch.is_grad_enabled() and x.requires_grad)
        a = self.upsample_columns(x.contiguous(memory_format=torch.channels_last))
        w_tmp = self.up_x[3]
        d = self.down
        ld = self.down_taps.shape[1]
        if self.down_radial:
            k_down = self.down_taps.reshape(1, 1, ld, ld).repeat(c, 1, 1, 1).to(x.dtype)
        else:
            k_down = self.down_taps.reshape(1, 1, 1, ld).repeat(c, 1, 1, 1).to(x.dtype)
        out: List[Tensor] = []
        # Without a gradient the strips' rows go to buffers reused from strip to strip (a fresh
        # allocation this large costs the kernel's page zeroing each time).
        tmp_buf = torch.empty(0)
        rows_buf = torch.empty(0)
        if inplace:
            tmp_buf = torch.empty(self.strip_up.shape[1], a.shape[1], dtype=x.dtype, device=x.device)
            rows_buf = torch.empty(self.strip_down.shape[1], a.shape[1], dtype=x.dtype, device=x.device)
        for s in range(len(self.strip_i0)):
            i0, ni, nj, nk = self.strip_i0[s], self.strip_ni[s], self.strip_nj[s], self.strip_nk[s]
            u_mat = self.strip_up[s, :nj, :ni].to(x.dtype)
            if inplace:
                tmp = torch.mm(u_mat, a[i0:i0 + ni], out=tmp_buf[:nj])  # [nj, W_tmp·C]
                tmp = F.leaky_relu_(tmp, self.slope)
                if self.clamp >= 0:
                    tmp = tmp.clamp_(-self.clamp, self.clamp)
            else:
                tmp = F.leaky_relu(torch.mm(u_mat, a[i0:i0 + ni]), self.slope)
                if self.clamp >= 0:
                    tmp = tmp.clamp(-self.clamp, self.clamp)
            if self.down_radial:
                y = F.conv2d(tmp.reshape(1, nj, w_tmp, c).permute(0, 3, 1, 2), k_down, stride=d,
                             groups=c)
            else:
                d_mat = self.strip_down[s, :nk, :nj].to(x.dtype)
                if inplace:
                    rows = torch.mm(d_mat, tmp, out=rows_buf[:nk])  # [nk, W_tmp·C]
                else:
                    rows = torch.mm(d_mat, tmp)
                y = F.conv2d(rows.reshape(1, nk, w_tmp, c).permute(0, 3, 1, 2), k_down,
                             stride=[1, d], groups=c)
            out.append(y.permute(0, 2, 3, 1))
        return torch.cat(out, 1).permute(0, 3, 1, 2)  # [1, C, out, out], channels-last

    def filtered_lrelu(self, x: Tensor) -> Tensor:
        """Bias, upsample (gain up²), leaky ReLU × gain, clamp, downsample: NVIDIA's
        `_filtered_lrelu_ref` order. The bias is added before the padding, so padded samples
        stay zero. ToRGB: bias and clamp."""
        inplace = not (torch.is_grad_enabled() and x.requires_grad)
        bias = self.bias.reshape(1, -1, 1, 1).to(x.dtype)
        x = x.add_(bias) if inplace else x + bias
        if self.is_torgb:
            if self.clamp >= 0:
                x = x.clamp_(-self.clamp, self.clamp) if inplace else x.clamp(-self.clamp, self.clamp)
            return x
        if x.shape[0] == 1:
            return self.filter_one(x)
        return torch.cat([self.filter_one(x[i:i + 1]) for i in range(x.shape[0])], 0)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return self.filtered_lrelu(self.modulated_conv(x, s))


class Generator(nn.Module):
    """StyleGAN3's generator: NVIDIA's mapping network (StyleGAN2-ADA's), the Fourier-feature
    input, `num_layers` synthesis layers and ToRGB, then `output_scale`.

    Methods called from C++ (the same as stylegan2.Generator; docs/stylegan3.md §4):
    `mapping`, `mapping_conditional`, `styles`, `synthesis_from_styles`, `synthesis_prefix`,
    `synthesis_suffix`, `synthesis`, `forward`, plus `set_transform` / `get_transform` for the
    input layer's user transform; buffer `w_avg`."""

    def __init__(self, w_dim: int, z_dim: int, c_dim: int, mapping_dims: List[int],
                 mapping_gains: List[Tuple[float, float]], embed_gains: Tuple[float, float],
                 input_spec: dict, layer_specs: List[dict], resolution: int, output_scale: float):
        super().__init__()
        self.resolution = resolution
        self.w_dim = w_dim
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.n_mlp = len(mapping_dims) - 1
        self.num_layers = len(layer_specs) - 1
        self.num_ws = self.num_layers + 2
        self.output_scale = float(output_scale)
        self.embed = (FullyConnected(c_dim, w_dim, embed_gains[0], embed_gains[1]) if c_dim > 0
                      else nn.Identity())
        self.mapping_layers = nn.ModuleList([
            FullyConnected(mapping_dims[i], mapping_dims[i + 1], mapping_gains[i][0],
                           mapping_gains[i][1], lrelu=True) for i in range(self.n_mlp)])
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.input = SynthesisInput(w_dim, input_spec["channels"], input_spec["size"],
                                    input_spec["sampling_rate"], input_spec["bandwidth"])
        layers = []
        for sp in layer_specs[:-1]:
            layers.append(self._layer(w_dim, sp))
        self.layers = nn.ModuleList(layers)
        self.torgb = self._layer(w_dim, layer_specs[-1])
        # The content scale of each style entry's output, in pixels of a full picture: the input's
        # and each layer's output sampling rate (a map holds the rate plus the margins).
        self.sampling_rates: List[int] = (
            [int(round(input_spec["sampling_rate"]))]
            + [int(round(sp.get("out_sampling_rate") or sp["out_size"])) for sp in layer_specs])

    @staticmethod
    def _layer(w_dim: int, sp: dict) -> SynthesisLayer:
        def tensor(f):
            return None if f is None else torch.as_tensor(np.asarray(f), dtype=torch.float32)
        return SynthesisLayer(w_dim, sp["in_channels"], sp["out_channels"], sp["in_size"],
                              sp["out_size"], sp["conv_kernel"], sp["is_torgb"], sp["up_factor"],
                              sp["down_factor"], sp["padding"], tensor(sp.get("up_filter")),
                              tensor(sp.get("down_filter")), sp.get("conv_clamp", 256),
                              sp.get("affine_weight_gain", 1.0 / math.sqrt(w_dim)),
                              sp.get("affine_bias_gain", 1.0))

    # ---- methods called from C++ ------------------------------------------------------------

    @torch.jit.export
    def mapping_conditional(self, z: Tensor, c: Tensor) -> Tensor:
        """z [B, z_dim], one-hot c [B, c_dim] (ignored when unconditional) -> w [B, w_dim]: z and
        the embedded label each normalised to unit second moment, joined, then the fc layers."""
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        if self.c_dim > 0:
            y = self.embed(c)
            y = y * torch.rsqrt(y.square().mean(dim=1, keepdim=True) + 1e-8)
            x = torch.cat([x, y], dim=1)
        for layer in self.mapping_layers:
            x = layer(x)
        return x

    @torch.jit.export
    def mapping(self, z: Tensor) -> Tensor:
        """z -> w; a conditional generator gets the all-zero label (use mapping_conditional)."""
        return self.mapping_conditional(z, torch.zeros(z.shape[0], self.c_dim, dtype=z.dtype,
                                                       device=z.device))

    @torch.jit.export
    def styles(self, ws: Tensor) -> List[Tensor]:
        """W+ [B, num_ws, w_dim] -> [input transform t [B, 4], layer 0 .. num_layers−1 styles,
        ToRGB styles]: every affine output, raw (ToRGB's before its weight gain). Entry i uses
        W+ row i."""
        out: List[Tensor] = [self.input.affine(ws[:, 0])]
        for i, layer in enumerate(self.layers):
            out.append(layer.affine(ws[:, i + 1]))
        out.append(self.torgb.affine(ws[:, self.num_layers + 1]))
        return out

    @torch.jit.export
    def synthesis_prefix(self, styles: List[Tensor], upto: int) -> List[Tensor]:
        """[x]: the input layer's features passed through layers 0 .. upto−1 (layer indices;
        upto in 0 .. num_layers). They depend only on styles[0 .. upto]."""
        x = self.input(styles[0])
        for i, layer in enumerate(self.layers):
            if i < upto:
                x = layer(x, styles[i + 1])
        return [x]

    @torch.jit.export
    def synthesis_suffix(self, prefix: List[Tensor], upto: int, styles: List[Tensor]) -> Tensor:
        """Layers upto .. num_layers−1, ToRGB and the output scale, from synthesis_prefix's
        result: synthesis_suffix(synthesis_prefix(s, k), k, s) == synthesis_from_styles(s)."""
        x = prefix[0]
        for i, layer in enumerate(self.layers):
            if i >= upto:
                x = layer(x, styles[i + 1])
        x = self.torgb(x, styles[self.num_layers + 1])
        return (x * self.output_scale).contiguous()

    @torch.jit.export
    def synthesis_from_styles(self, styles: List[Tensor], randomize_noise: bool = False) -> Tensor:
        """S -> image [B, 3, R, R] (raw, about [-1, 1]). StyleGAN3 has no noise inputs:
        `randomize_noise` is accepted and ignored."""
        return self.synthesis_suffix(self.synthesis_prefix(styles, 0), 0, styles)

    @torch.jit.export
    def synthesis(self, ws: Tensor, randomize_noise: bool = False) -> Tensor:
        return self.synthesis_from_styles(self.styles(ws), randomize_noise)

    @torch.jit.export
    def set_transform(self, m: Tensor) -> None:
        """Sets the input layer's user transform (3×3), an inverse transform of the resulting
        image: NVIDIA's gen_images.py passes inv(make_transform(translate, angle))."""
        with torch.no_grad():
            self.input.transform.copy_(m.to(self.input.transform.dtype).reshape(3, 3))

    @torch.jit.export
    def get_transform(self) -> Tensor:
        return self.input.transform.clone()

    def forward(self, ws: Tensor) -> Tensor:
        return self.synthesis(ws, False)


# ---- helpers for the manifest ------------------------------------------------------------------

def style_dims(g: Generator) -> List[int]:
    """Width of each style entry: 4 (input transform), each layer's input channels, ToRGB's."""
    return [4] + [int(layer.in_channels) for layer in g.layers] + [int(g.torgb.in_channels)]


def style_is_rgb(g: Generator) -> List[bool]:
    n = g.num_layers + 2
    return [i == n - 1 for i in range(n)]


def style_is_input(g: Generator) -> List[bool]:
    return [i == 0 for i in range(g.num_layers + 2)]


def style_resolutions(g: Generator) -> List[int]:
    """The scale each style entry acts at, as StyleGAN2's per-layer resolution: entry 0 the input
    layer's sampling rate, then each layer's output sampling rate (its map is that plus the
    margins), the last the image resolution."""
    return [int(r) for r in g.sampling_rates]


def layer_channels(g: Generator) -> List[int]:
    """Output channels of the input layer, each synthesis layer and ToRGB (3)."""
    return ([int(g.input.channels)] + [int(layer.out_channels) for layer in g.layers]
            + [int(g.torgb.out_channels)])


# ---- NVIDIA pickles ----------------------------------------------------------------------------

def is_stylegan3(G) -> bool:
    """Whether a recorded NVIDIA Generator is StyleGAN3's: its synthesis network has the Fourier
    `input` layer and named `L{i}_{size}_{channels}` layers (or the class says so)."""
    syn = G.children.get("synthesis")
    if syn is None:
        return False
    if "networks_stylegan3" in syn.class_name:
        return True
    return "input" in syn.children and any(k.startswith("L0_") for k in syn.children)


def _kw(net, name: str, default=None):
    if name in net.init_kwargs:
        return net.init_kwargs[name]
    return net.attrs.get(name, default)


def _scalar(v, what: str):
    """An int or float attribute (numpy scalars and 1- or 2-element arrays of equal values
    included: NVIDIA records sizes as np.broadcast_to(size, [2]))."""
    a = np.asarray(v)
    if a.size == 0 or a.dtype.kind not in "biuf":
        raise NotAGenerator(f"{what} is not a number ({v!r})")
    flat = a.reshape(-1)
    if not np.all(flat == flat[0]):
        raise NotAGenerator(f"{what} is {flat.tolist()}: only square feature maps are supported")
    return flat[0].item()


def _tensor(net, name: str, where: Optional[str] = None) -> Tensor:
    t = net.parameters.get(name)
    if t is None:
        t = net.buffers.get(name)
    if t is None:
        raise NotAGenerator(f"{where or net.short_name} has no tensor '{name}'")
    return t.detach().float()


def _fc_gains(net, in_features: int) -> Tuple[float, float]:
    wg = net.attrs.get("weight_gain")
    bg = net.attrs.get("bias_gain")
    if wg is None or bg is None:
        lr = float(_kw(net, "lr_multiplier", 1.0))
        wg, bg = lr / math.sqrt(in_features), lr
    return float(_scalar(wg, "a weight_gain")), float(_scalar(bg, "a bias_gain"))


def describe(G) -> dict:
    """Every size of a StyleGAN3 generator, read from the pickle's recorded arguments,
    attributes and tensors; refuses (NotAGenerator, one line) what this module cannot run."""
    if not is_stylegan3(G) or "mapping" not in G.children:
        raise NotAGenerator("its Generator has no StyleGAN3 synthesis network (input and L0_… layers)")
    syn, mapping = G.child("synthesis"), G.child("mapping")
    img_channels = int(_kw(G, "img_channels", 3))
    if img_channels != 3:
        raise NotAGenerator(f"it makes {img_channels}-channel images; only RGB is supported")
    names = syn.attrs.get("layer_names")
    if not names:
        names = [k for k in syn.children if k.startswith("L") and k[1:].split("_")[0].isdigit()]
        names.sort(key=lambda k: int(k[1:].split("_")[0]))
    names = [str(n) for n in names]
    missing = [n for n in names if n not in syn.children]
    if missing or len(names) < 2:
        raise NotAGenerator(f"its synthesis layers are incomplete (missing {missing[:3]})")
    num_layers = len(names) - 1
    resolution = int(_kw(G, "img_resolution", _kw(syn, "img_resolution", 0)))
    num_ws = int(syn.attrs.get("num_ws", G.attrs.get("num_ws", num_layers + 2)))
    if num_ws != num_layers + 2:
        raise NotAGenerator(f"it records {num_ws} W+ rows for {num_layers} layers (expected "
                            f"{num_layers + 2})")
    if resolution < 1 or resolution & (resolution - 1):
        raise NotAGenerator(f"its resolution {resolution} is not a power of two")
    n_mlp = 0
    while f"fc{n_mlp}" in mapping.children:
        n_mlp += 1
    if n_mlp == 0:
        raise NotAGenerator("its mapping network has no fc layers")
    fcs = [mapping.child(f"fc{i}") for i in range(n_mlp)]
    mapping_dims = [int(_tensor(fcs[0], "weight").shape[1])]
    mapping_dims += [int(_tensor(fc, "weight").shape[0]) for fc in fcs]
    for fc in fcs:
        act = fc.attrs.get("activation", "lrelu")
        if act != "lrelu":
            raise NotAGenerator(f"its mapping layers use '{act}'; only lrelu is supported")
    c_dim = int(_kw(G, "c_dim", 0))
    w_dim = int(_kw(G, "w_dim", mapping_dims[-1]))
    z_dim = int(_kw(G, "z_dim", mapping_dims[0] - (w_dim if c_dim else 0)))
    if mapping_dims[-1] != w_dim or mapping_dims[0] != z_dim + (w_dim if c_dim else 0):
        raise NotAGenerator(f"its mapping sizes {mapping_dims} do not fit z_dim {z_dim}, "
                            f"c_dim {c_dim}, w_dim {w_dim}")
    inp = syn.child("input")
    in_spec = {"channels": int(_scalar(_kw(inp, "channels"), "input channels")),
               "size": int(_scalar(_kw(inp, "size"), "input size")),
               "sampling_rate": float(_scalar(_kw(inp, "sampling_rate"), "input sampling_rate")),
               "bandwidth": float(_scalar(_kw(inp, "bandwidth"), "input bandwidth"))}
    layers = []
    for idx, name in enumerate(names):
        L = syn.child(name)
        torgb = bool(_kw(L, "is_torgb", idx == num_layers))
        if torgb != (idx == num_layers):
            raise NotAGenerator(f"layer {name} is{'' if torgb else ' not'} ToRGB, out of place")
        sp = {"name": name, "is_torgb": torgb}
        for key in ("in_channels", "out_channels", "in_size", "out_size", "conv_kernel",
                    "up_factor", "down_factor"):
            v = L.attrs.get(key)
            if v is None:
                raise NotAGenerator(f"layer {name} records no '{key}'")
            sp[key] = int(_scalar(v, f"{name}.{key}"))
        for key in ("in_sampling_rate", "out_sampling_rate", "in_cutoff", "out_cutoff",
                    "in_half_width", "out_half_width"):
            v = L.attrs.get(key)
            sp[key] = None if v is None else float(_scalar(v, f"{name}.{key}"))
        sp["is_critically_sampled"] = bool(L.attrs.get("is_critically_sampled", False))
        pad = L.attrs.get("padding")
        if pad is None or len(list(pad)) != 4:
            raise NotAGenerator(f"layer {name} records no 4-number padding")
        sp["padding"] = [int(p) for p in pad]
        clamp = L.attrs.get("conv_clamp", None)
        sp["conv_clamp"] = None if clamp is None else float(clamp)
        for f in ("up_filter", "down_filter"):
            t = L.buffers.get(f)
            if t is not None and t.dim() not in (1, 2):
                raise NotAGenerator(f"layer {name}'s {f} has {t.dim()} dimensions")
            sp[f] = None if t is None else t.float()
        act = L.child("affine") if "affine" in L.children else None
        if act is None:
            raise NotAGenerator(f"layer {name} has no affine layer")
        sp["affine_weight_gain"], sp["affine_bias_gain"] = _fc_gains(act, w_dim)
        layers.append(sp)
    for prev, sp in zip([None] + layers[:-1], layers):
        want_in = in_spec["size"] if prev is None else prev["out_size"]
        want_ch = in_spec["channels"] if prev is None else prev["out_channels"]
        if sp["in_size"] != want_in or sp["in_channels"] != want_ch:
            raise NotAGenerator(f"layer {sp['name']} takes {sp['in_channels']}×{sp['in_size']}² "
                                f"but receives {want_ch}×{want_in}²")
    if layers[-1]["out_size"] != resolution or layers[-1]["out_channels"] != 3:
        raise NotAGenerator(f"its last layer makes {layers[-1]['out_channels']}×"
                            f"{layers[-1]['out_size']}², not 3×{resolution}²")
    kernel = layers[0]["conv_kernel"]
    radial = any(sp["down_filter"] is not None and sp["down_filter"].dim() == 2 for sp in layers)
    return {
        "resolution": resolution, "w_dim": w_dim, "z_dim": z_dim, "c_dim": c_dim,
        "num_ws": num_ws, "num_layers": num_layers, "n_mlp": n_mlp,
        "mapping_dims": mapping_dims, "lr_mlp": float(_fc_gains(fcs[0], mapping_dims[0])[1]),
        "input": in_spec, "layers": layers,
        "output_scale": float(_scalar(syn.attrs.get("output_scale", 0.25), "output_scale")),
        "conv_kernel": kernel, "use_radial_filters": radial,
        "architecture": "stylegan3-r" if kernel == 1 else "stylegan3-t",
        "num_critical": syn.attrs.get("num_critical"), "margin_size": syn.attrs.get("margin_size"),
        "channel_base": _kw(syn, "channel_base", None), "channel_max": _kw(syn, "channel_max", None),
        "num_fp16_res": syn.attrs.get("num_fp16_res"),
        "conv_clamp": layers[0]["conv_clamp"],
        "magnitude_ema_beta": _kw(syn, "magnitude_ema_beta", None),
    }


def build_generator(G) -> Tuple[Generator, dict]:
    """Our scriptable Generator with the weights of a recorded NVIDIA StyleGAN3 Generator
    (a safe_pickle.PersistentModule), and its description (`describe`). Anything it cannot
    represent is refused with NotAGenerator and a one-line reason."""
    try:
        return _build_generator(G)
    except NotAGenerator:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RuntimeError) as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        raise NotAGenerator(f"its recorded StyleGAN3 network is malformed "
                            f"({type(e).__name__}: {detail})") from None


def _build_generator(G) -> Tuple[Generator, dict]:
    cfg = describe(G)
    syn, mapping = G.child("synthesis"), G.child("mapping")
    w_dim, c_dim = cfg["w_dim"], cfg["c_dim"]
    fcs = [mapping.child(f"fc{i}") for i in range(cfg["n_mlp"])]
    gains = [_fc_gains(fc, cfg["mapping_dims"][i]) for i, fc in enumerate(fcs)]
    embed_gains = (1.0, 1.0)
    if c_dim > 0:
        if "embed" not in mapping.children:
            raise NotAGenerator(f"it is conditional ({c_dim} classes) but has no label embedding")
        embed_gains = _fc_gains(mapping.child("embed"), c_dim)
    g = Generator(w_dim, cfg["z_dim"], c_dim, cfg["mapping_dims"], gains, embed_gains,
                  cfg["input"], cfg["layers"], cfg["resolution"], cfg["output_scale"])
    sd: Dict[str, Tensor] = OrderedDict()
    for i, fc in enumerate(fcs):
        sd[f"mapping_layers.{i}.weight"] = _tensor(fc, "weight", f"mapping fc{i}")
        sd[f"mapping_layers.{i}.bias"] = _tensor(fc, "bias", f"mapping fc{i}")
    if c_dim > 0:
        sd["embed.weight"] = _tensor(mapping.child("embed"), "weight")
        sd["embed.bias"] = _tensor(mapping.child("embed"), "bias")
    sd["w_avg"] = _tensor(mapping, "w_avg", "the mapping network").reshape(-1)
    inp = syn.child("input")
    for key in ("weight", "transform", "freqs", "phases"):
        sd[f"input.{key}"] = _tensor(inp, key, "the input layer")
    sd["input.affine.weight"] = _tensor(inp.child("affine"), "weight")
    sd["input.affine.bias"] = _tensor(inp.child("affine"), "bias")
    for idx, sp in enumerate(cfg["layers"]):
        L = syn.child(sp["name"])
        dst = "torgb" if sp["is_torgb"] else f"layers.{idx}"
        where = f"layer {sp['name']}"
        sd[f"{dst}.weight"] = _tensor(L, "weight", where)
        sd[f"{dst}.bias"] = _tensor(L, "bias", where)
        sd[f"{dst}.magnitude_ema"] = _tensor(L, "magnitude_ema", where).reshape([])
        sd[f"{dst}.affine.weight"] = _tensor(L.child("affine"), "weight", where + " affine")
        sd[f"{dst}.affine.bias"] = _tensor(L.child("affine"), "bias", where + " affine")
    own = g.state_dict()
    for name, value in own.items():
        # Filters and their derived taps and the sampling grid were built from the pickle's
        # buffers and attributes at construction.
        if name not in sd and name.rsplit(".", 1)[-1] in (
                "up_filter", "down_filter", "up_taps", "down_taps", "strip_up", "strip_down", "grid"):
            sd[name] = value
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise NotAGenerator(f"its tensors do not fit a StyleGAN3 generator (missing {missing[:4]}, "
                            f"unexpected {unexpected[:4]}, wrong shape "
                            f"{[(k, list(sd[k].shape)) for k in wrong[:4]]})")
    g.load_state_dict(sd, strict=True)
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    return g, cfg


# ---- random generators (tests, benchmarks) -----------------------------------------------------

# The published configurations (NVlabs/stylegan3 train.py: --cfg stylegan3-t / stylegan3-r).
CONFIGS = {
    "t": {"conv_kernel": 3, "use_radial_filters": False, "channel_base": 32768, "channel_max": 512},
    "r": {"conv_kernel": 1, "use_radial_filters": True, "channel_base": 65536, "channel_max": 1024},
}


def random_generator(cfg: dict, seed: int = 0) -> Tuple[Generator, dict]:
    """A StyleGAN3 generator with random weights at any size, its filters designed here.

    `cfg`: "config" ("t" or "r"), "resolution", and optionally "w_dim" (512), "z_dim" (w_dim),
    "c_dim" (0), "n_mlp" (2), "lr_mlp" (0.01), "channel_base", "channel_max" (the config's),
    "num_layers" (14), "num_critical" (2), "margin_size" (10), "first_cutoff" (2),
    "first_stopband" (2**2.1), "last_stopband_rel" (2**0.3), "conv_clamp" (256),
    "output_scale" (0.25), "calibrate" (True: set every magnitude_ema to its input's mean square
    and w_avg to the mean of mapped samples, as training's moving averages would; False: leave
    them at 1 and 0 for speed at large sizes). Returns (generator, description with the spec).
    """
    conf = dict(CONFIGS[cfg.get("config", "t")])
    for k in ("channel_base", "channel_max", "conv_kernel", "use_radial_filters"):
        if k in cfg:
            conf[k] = cfg[k]
    w_dim = int(cfg.get("w_dim", 512))
    z_dim = int(cfg.get("z_dim", w_dim))
    c_dim = int(cfg.get("c_dim", 0))
    n_mlp = int(cfg.get("n_mlp", 2))
    lr = float(cfg.get("lr_mlp", 0.01))
    spec = network_spec(int(cfg["resolution"]), conf["channel_base"], conf["channel_max"],
                        int(cfg.get("num_layers", 14)), int(cfg.get("num_critical", 2)),
                        float(cfg.get("first_cutoff", 2)), float(cfg.get("first_stopband", 2 ** 2.1)),
                        float(cfg.get("last_stopband_rel", 2 ** 0.3)),
                        int(cfg.get("margin_size", 10)), conf["conv_kernel"],
                        use_radial_filters=conf["use_radial_filters"])
    clamp = cfg.get("conv_clamp", 256)
    for sp in spec["layers"]:
        sp["conv_clamp"] = clamp
        sp["affine_weight_gain"] = 1.0 / math.sqrt(w_dim)
        sp["affine_bias_gain"] = 1.0
    dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * n_mlp
    gains = [(lr / math.sqrt(dims[i]), lr) for i in range(n_mlp)]
    g = Generator(w_dim, z_dim, c_dim, dims, gains, (1.0 / math.sqrt(max(c_dim, 1)), 1.0),
                  spec["input"], spec["layers"], spec["resolution"], cfg.get("output_scale", 0.25))
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    with torch.no_grad():
        for i, layer in enumerate(g.mapping_layers):
            layer.weight.copy_(randn(*layer.weight.shape) / lr)
            layer.bias.copy_(randn(*layer.bias.shape) * 0.1 / lr)
        if c_dim:
            g.embed.weight.copy_(randn(*g.embed.weight.shape))
            g.embed.bias.copy_(randn(*g.embed.bias.shape) * 0.1)
        # The input layer: frequencies uniform over the disc of radius `bandwidth` (§3.1,
        # Appendix D; drawn as NVIDIA does: a 2-D normal sample's direction, with radius
        # exp(−r²/4) = √(a uniform variable), since exp(−r²/2) of a 2-D normal is uniform), phases
        # uniform; the affine, initialised to zero weights and bias (1, 0, 0, 0), moved away.
        inp = g.input
        f = randn(inp.channels, 2)
        radii = f.square().sum(dim=1, keepdim=True).sqrt()
        f = f / (radii * radii.square().exp().pow(0.25)) * inp.bandwidth
        inp.freqs.copy_(f)
        inp.phases.copy_(torch.rand(inp.channels, generator=gen) - 0.5)
        inp.weight.copy_(randn(inp.channels, inp.channels))
        inp.affine.weight.copy_(randn(4, w_dim) * 0.2)
        inp.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.1 * randn(4))
        for layer in list(g.layers) + [g.torgb]:
            layer.weight.copy_(randn(*layer.weight.shape))
            layer.bias.copy_(randn(*layer.bias.shape) * 0.1)
            layer.affine.weight.copy_(randn(*layer.affine.weight.shape))
            layer.affine.bias.copy_(1.0 + 0.1 * randn(*layer.affine.bias.shape))
        if cfg.get("calibrate", True):
            z = randn(256, z_dim)
            c = torch.zeros(256, c_dim)
            if c_dim:
                c[torch.arange(256), torch.arange(256) % c_dim] = 1
            g.w_avg.copy_(g.mapping_conditional(z, c).mean(0))
            ws = g.mapping_conditional(z[:8], c[:8])[:, None].repeat(1, g.num_ws, 1)
            styles = g.styles(ws)
            x = g.input(styles[0])
            for i, layer in enumerate(list(g.layers) + [g.torgb]):
                layer.magnitude_ema.copy_(x.square().mean())
                x = layer(x, styles[i + 1])
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    desc = {"architecture": f"stylegan3-{cfg.get('config', 't')}", "resolution": g.resolution,
            "w_dim": w_dim, "z_dim": z_dim, "c_dim": c_dim, "num_ws": g.num_ws,
            "num_layers": g.num_layers, "n_mlp": n_mlp, "lr_mlp": lr, "mapping_dims": dims,
            "spec": spec, "output_scale": g.output_scale, "conv_clamp": clamp, **conf}
    return g, desc
