#!/usr/bin/python3
"""The reference's per-channel direction procedure written plainly in Python/PyTorch (algorithms
§3.3), on the same exported TorchScript models and the same style codes as bench_global (its
--dump folder). `--batch 1` renders one image per generator call, as SingleChannel.py does;
`--batch B` renders B perturbed codes per call, the computation bench_global times, written the
way a PyTorch user would (the fair baseline on a GPU). Prints one JSON object."""

import argparse
import contextlib
import json
import resource
import time

import torch
import torch.nn.functional as F


def pixels(images, res, mean, std):
    x = torch.floor((images.float().clamp(-1, 1) + 1) / 2 * 255 + 0.5)
    if x.shape[-1] != res:
        x = F.interpolate(x, size=(res, res), mode="bicubic", align_corners=False, antialias=True).round().clamp(0, 255)
    return (x / 255 - mean) / std


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="perturbed codes per generator call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    getattr(torch._C, "_set_graph_executor_optimize", lambda _: None)(False)  # as the C++ side (LIBTORCH-NOTES)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"

    def scope():
        if a.precision in ("bf16", "fp16"):
            return torch.autocast(dev.type, dtype=torch.bfloat16 if a.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    manifest = json.load(open(f"{a.models}/manifest.json"))
    res = manifest["clip"]["config"]["image_resolution"]
    mean = torch.tensor(manifest["clip"]["image_mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(manifest["clip"]["image_std"], device=dev).view(1, 3, 1, 1)
    g = torch.jit.load(f"{a.models}/generator.pt", map_location=dev).eval()
    c = torch.jit.load(f"{a.models}/clip.pt", map_location=dev).eval()
    s_mean = [t.to(dev) for t in torch.load(f"{a.dump}/mean.pt")]
    s_std = [t.to(dev) for t in torch.load(f"{a.dump}/std.pt")]
    samples = [t.to(dev) for t in torch.load(f"{a.dump}/samples.pt")]
    k = samples[0].shape[0]
    L = a.layer

    def directions(channels):
        # Jobs in the C++ order: channel, sign (−σ, +σ), image.
        jobs = [(ch, sign, i) for ch in channels for sign in (-1.0, 1.0) for i in range(k)]
        feats = []
        for start in range(0, len(jobs), a.batch):
            chunk = jobs[start:start + a.batch]
            idx = torch.tensor([i for _, _, i in chunk], device=dev)
            s = [t.index_select(0, idx).clone() for t in samples]
            for row, (ch, sign, _) in enumerate(chunk):
                s[L][row, ch] = s_mean[L][ch] + sign * 5.0 * s_std[L][ch]
            with scope():
                e = c.encode_image(pixels(g.synthesis_from_styles(s, False), res, mean, std))
            feats.append(F.normalize(e.float(), dim=1))
        e = torch.cat(feats).view(len(channels), 2, k, -1)
        d = F.normalize(e[:, 1] - e[:, 0], dim=2)
        return F.normalize(d.mean(1), dim=1)

    with torch.no_grad():
        directions([0])  # warm-up
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.time()
        dirs = directions(list(range(a.channels))).cpu()
        secs = time.time() - t0
    peak = torch.cuda.max_memory_allocated(dev) / 1048576.0 if cuda else None
    cpp = torch.load(f"{a.dump}/directions_cpp.pt")
    renders = a.channels * 2 * k
    print(json.dumps({"impl": "python", "device": str(dev), "precision": a.precision, "renders": renders,
                      "prepare_seconds": secs, "renders_per_second": renders / secs, "batch": a.batch,
                      "max_abs_diff_vs_cpp": float((dirs - cpp).abs().max()),
                      "prepare_peak_device_mb": peak,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "threads": a.threads}))


if __name__ == "__main__":
    main()
