#!/usr/bin/python3
"""The optimisation loop of StyleCLIP's run_optimization.py, in Python/PyTorch, on a bundle's
TorchScript files: the Python side of bench_optimize (see bench/README.md).

Run with Debian's Python (`/usr/bin/python3`). The prompt's text embedding and the start latents
come from the C++ side (`bench_optimize --models DIR --batch B --dump-text T.pt --dump-start W.pt`)
so that both sides optimise identical inputs and no tokenizer is needed here.

Per step: lr from get_lr (5 % warm-up, cosine ramp-down over the last 25 %); image =
G.synthesis(ws, False); CLIP input = R·img·Rᵀ (the same matrix as styleclip's ClipResize), or
with `--resize upsample` the reference's nearest upsample ×u then average pool k
(criteria/clip_loss.py); loss = Σ_rows (1 − cos(CLIP(x), text)) + 0.008·Σ(w − w0)²; backward;
Adam step. W warm-up steps run first as a separate, untimed run. Prints JSON like bench_optimize.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

L2_LAMBDA = 0.008
LR = 0.1


def fail(message, code=2):
    print(f"optimize_reference: error: {message}", file=sys.stderr)
    sys.exit(code)


def get_lr(t, initial_lr, rampdown=0.25, rampup=0.05):
    # run_optimization.py, verbatim.
    lr_ramp = min(1, (1 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    lr_ramp = lr_ramp * min(1, t / rampup)
    return initial_lr * lr_ramp


def resize_matrix(n_in, n_out):
    """styleclip's ClipResize: R[i, a] = |{y in [k·i, k·i + k) : y // u = a}| / k."""
    g = math.gcd(n_in, n_out)
    u, k = n_out // g, n_in // g
    r = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        for y in range(k * i, k * i + k):
            r[i, y // u] += 1.0 / k
    return r.to(torch.float32), u, k


class Resize:
    def __init__(self, n_in, n_out, mode):
        self.r, self.u, self.k = resize_matrix(n_in, n_out)
        self.mode = mode

    def __call__(self, img):
        if self.u == 1 and self.k == 1:
            return img
        if self.mode == "matrix":
            return torch.matmul(torch.matmul(self.r, img), self.r.t())
        # criteria/clip_loss.py: torch.nn.Upsample(scale_factor=7) (nearest), AvgPool2d(size // 32).
        x = F.interpolate(img, scale_factor=self.u, mode="nearest") if self.u > 1 else img
        return F.avg_pool2d(x, self.k) if self.k > 1 else x


def precision_scope(device, precision):
    """The idiomatic PyTorch form of --precision: TF32 switches, autocast for bf16/fp16."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimize(G, clip, resize, w0, text, steps, precision="fp32"):
    """One run of `steps` steps from w0; returns (loop seconds, final latent)."""
    w = w0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sync(w.device)
    t0 = time.perf_counter()
    for i in range(steps):
        opt.param_groups[0]["lr"] = get_lr(i / steps, LR)
        opt.zero_grad()
        with precision_scope(w.device, precision):
            img = G.synthesis(w, False)
            e = clip.encode_image(resize(img))
        e = e.float()
        c_loss = (1.0 - F.cosine_similarity(e, text.expand_as(e), dim=1, eps=1e-8)).sum()
        l2 = ((w0 - w) ** 2).sum()
        loss = c_loss + L2_LAMBDA * l2
        loss.backward()
        opt.step()
    sync(w.device)
    return time.perf_counter() - t0, w.detach()


def profile_steps(G, clip, resize, w0, text, steps, precision, path):
    """Where a step's time goes: device (kernel) time against wall time, kernel launches, and
    the operators that take the most device time. Device time far below wall time means the
    step is launch-bound (what CUDA graphs remove); close to it means the GPU is busy."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if w0.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        wall, _ = optimize(G, clip, resize, w0, text, steps, precision)
    ka = prof.key_averages()

    def device_self(e):
        for name in ("self_device_time_total", "self_cuda_time_total"):
            v = getattr(e, name, None)
            if v is not None:
                return float(v)
        return 0.0

    launches = sum(e.count for e in ka if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel"))
    summary = {
        "steps": steps,
        "batch": int(w0.shape[0]),
        "precision": precision,
        "wall_ms_per_step_profiled": 1000.0 * wall / steps,
        "device_kernel_ms_per_step": sum(device_self(e) for e in ka) / 1000.0 / steps,
        "kernel_launches_per_step": launches / steps,
        "cpu_ops_per_step": sum(e.count for e in ka if e.key.startswith("aten::")) / steps,
    }
    cost = device_self if w0.device.type == "cuda" else (lambda e: float(e.self_cpu_time_total))
    rows = sorted(ka, key=cost, reverse=True)[:30]
    with open(path, "w") as f:
        f.write(json.dumps(summary) + "\n\n")
        f.write(f"{'operator':60s} {'calls/step':>10s} {'device ms/step':>15s} {'cpu self ms/step':>17s}\n")
        for e in rows:
            f.write(f"{e.key[:60]:60s} {e.count / steps:10.1f} {device_self(e) / 1000.0 / steps:15.3f} "
                    f"{e.self_cpu_time_total / 1000.0 / steps:17.3f}\n")
    return summary


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="bundle folder (generator.pt, clip.pt, manifest.json)")
    p.add_argument("--text-embedding", required=True, metavar="FILE", help="[1, D] from bench_optimize --dump-text")
    p.add_argument("--start", required=True, metavar="FILE", help="[B, num_ws, w_dim] from bench_optimize --dump-start")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--resize", choices=["matrix", "upsample"], default="matrix")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="fp32")
    p.add_argument("--json", action="store_true")
    p.add_argument("--render", type=int, default=0, metavar="N",
                   help="instead of optimising, time N renders of the start latents (after one untimed)")
    p.add_argument("--profile", metavar="FILE",
                   help="also profile --steps more steps (torch.profiler) and write where the time goes to FILE")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        fail("--steps must be at least 1 and --warmup zero or more")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    getattr(torch._C, "_set_graph_executor_optimize", lambda _: None)(False)  # as styleclip::configure_runtime does

    try:
        with open(os.path.join(args.models, "manifest.json")) as f:
            manifest = json.load(f)
        device = torch.device(args.device)
        G = torch.jit.load(os.path.join(args.models, manifest["files"]["generator"]["path"]), map_location=device)
        clip = torch.jit.load(os.path.join(args.models, manifest["files"]["clip"]["path"]), map_location=device)
        text = torch.load(args.text_embedding).detach().to(device)
        w0 = torch.load(args.start).detach().to(device)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        fail(f"cannot load inputs: {str(e).splitlines()[0]}", 3)
    for m in (G, clip):
        m.eval()
        for q in m.parameters():
            q.requires_grad_(False)
    resolution = int(manifest["generator"]["resolution"])
    clip_res = int(manifest["clip"]["config"]["image_resolution"])
    if w0.dim() != 3 or w0.shape[1] != manifest["generator"]["num_ws"]:
        fail(f"start latents have shape {list(w0.shape)}, expected [B, num_ws, w_dim]", 4)
    resize = Resize(resolution, clip_res, args.resize)
    resize.r = resize.r.to(device)

    if args.render > 0:
        with torch.no_grad():
            G.synthesis(w0, False)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.render):
                G.synthesis(w0, False)
            sync(device)
            secs = time.perf_counter() - t0
        out = {"impl": "python", "mode": "render", "device": str(device),
               "ms_per_render": 1000.0 * secs / args.render, "peak_rss_mb": peak_rss_mb(),
               "batch": int(w0.shape[0]), "renders": args.render, "threads": torch.get_num_threads(),
               "resolution": resolution}
        print(json.dumps(out) if args.json else f"python: {out['ms_per_render']:.1f} ms/render")
        return
    if args.warmup > 0:
        optimize(G, clip, resize, w0, text, args.warmup, args.precision)
    rss_before = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, w = optimize(G, clip, resize, w0, text, args.steps, args.precision)
    peak_dev = torch.cuda.max_memory_allocated(device) / 1048576.0 if device.type == "cuda" else None
    if args.profile:
        out_profile = profile_steps(G, clip, resize, w0, text, args.steps, args.precision, args.profile)
        print(json.dumps(out_profile), file=sys.stderr)
    with torch.no_grad(), precision_scope(device, args.precision):
        e = clip.encode_image(resize(G.synthesis(w, False))).float()
        sim = F.cosine_similarity(e, text.expand_as(e), dim=1, eps=1e-8).mean().item()

    out = {
        "impl": "python",
        "device": str(device),
        "precision": args.precision,
        "peak_device_mb": peak_dev,
        "steps_per_second": args.steps / seconds,
        "ms_per_step": 1000.0 * seconds / args.steps,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_before_timed_mb": rss_before,
        "batch": int(w0.shape[0]),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "resolution": resolution,
        "clip_resolution": clip_res,
        "resize": args.resize,
        "final_clip_similarity": sim,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"python: {out['ms_per_step']:.2f} ms/step, peak RSS {out['peak_rss_mb']:.0f} MB "
              f"({out['batch']} x {resolution} px, {args.steps} steps, resize {args.resize})")


if __name__ == "__main__":
    main()
