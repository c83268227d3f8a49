#!/usr/bin/python3
"""The reference's per-channel direction procedure written plainly in Python/PyTorch: one render
per generator call, as SingleChannel.py does (algorithms §3.3), on the same exported TorchScript
models and the same style codes as bench_global (its --dump folder). Prints one JSON object."""

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F


def pixels(images, res, mean, std):
    x = torch.floor((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5)
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch._C._set_graph_executor_optimize(False)  # as the C++ side (LIBTORCH-NOTES)
    manifest = json.load(open(f"{a.models}/manifest.json"))
    res = manifest["clip"]["config"]["image_resolution"]
    mean = torch.tensor(manifest["clip"]["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(manifest["clip"]["image_std"]).view(1, 3, 1, 1)
    g = torch.jit.load(f"{a.models}/generator.pt").eval()
    c = torch.jit.load(f"{a.models}/clip.pt").eval()
    s_mean = torch.load(f"{a.dump}/mean.pt")
    s_std = torch.load(f"{a.dump}/std.pt")
    samples = torch.load(f"{a.dump}/samples.pt")
    k = samples[0].shape[0]
    L = a.layer

    def direction(ch):
        diffs = []
        for i in range(k):
            f = []
            for sign in (-1.0, 1.0):
                s = [t[i:i + 1].clone() for t in samples]
                s[L][0, ch] = s_mean[L][ch] + sign * 5.0 * s_std[L][ch]
                e = c.encode_image(pixels(g.synthesis_from_styles(s, False), res, mean, std))
                f.append(F.normalize(e, dim=1))
            diffs.append(F.normalize(f[1] - f[0], dim=1))
        return F.normalize(torch.cat(diffs).mean(0), dim=0)

    with torch.no_grad():
        direction(0)  # warm-up
        t0 = time.time()
        dirs = torch.stack([direction(ch) for ch in range(a.channels)])
        secs = time.time() - t0
    cpp = torch.load(f"{a.dump}/directions_cpp.pt")
    renders = a.channels * 2 * k
    print(json.dumps({"impl": "python", "renders": renders, "prepare_seconds": secs,
                      "renders_per_second": renders / secs, "batch": 1,
                      "max_abs_diff_vs_cpp": float((dirs - cpp).abs().max()),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "threads": a.threads}))


if __name__ == "__main__":
    main()
