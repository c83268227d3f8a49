#!/usr/bin/python3
"""The Python side of bench_photo: the same encoder.pt / lpips.pt, the same random inputs (seed 0,
torch.rand on the CPU in the same order), the same warm-up and repetitions, the same threads.

  /usr/bin/python3 bench/photo_reference.py --models DIR [--batch B] [--reps N] [--warmup W]
                                            [--threads T] [--device cpu|cuda]
Prints one JSON object with the same keys as bench_photo.
"""
import argparse
import json
import os
import resource
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch._C._set_graph_executor_optimize(False)   # as configure_runtime does on the C++ side
    dev = torch.device(a.device)
    manifest = json.load(open(os.path.join(a.models, "manifest.json")))
    files = manifest["files"]
    gen = torch.Generator().manual_seed(0)
    out = {"impl": "python", "device": str(dev), "precision": "fp32", "batch": a.batch}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def time_it(f):
        for _ in range(a.warmup):
            f()
        sync()
        t0 = time.perf_counter()
        for _ in range(a.reps):
            f()
        sync()
        return (time.perf_counter() - t0) / a.reps

    if "encoder" in files:
        enc = torch.jit.load(os.path.join(a.models, files["encoder"]["path"]), map_location=dev)
        s = int(enc.input_size)
        x = (torch.rand(a.batch, 3, s, s, generator=gen) * 2 - 1).to(dev)
        box = {}
        with torch.no_grad():
            secs = time_it(lambda: box.update(w=enc.encode(x)))
        out["encoder_input"] = s
        out["encoder_ms_per_image"] = secs * 1e3 / a.batch
        out["encoder_checksum"] = float(box["w"].abs().mean())
    if "lpips" in files:
        lp = torch.jit.load(os.path.join(a.models, files["lpips"]["path"]), map_location=dev)
        for p in lp.parameters():
            p.requires_grad_(False)
        x = (torch.rand(a.batch, 3, 256, 256, generator=gen) * 2 - 1).to(dev)
        y = (torch.rand(a.batch, 3, 256, 256, generator=gen) * 2 - 1).to(dev)
        box = {}

        def step():
            z = x.clone().requires_grad_(True)
            d = lp.distance(z, y).sum()
            d.backward()
            box["d"] = float(d)
        secs = time_it(step)
        out["lpips_fwd_bwd_ms_per_image"] = secs * 1e3 / a.batch
        out["lpips_checksum"] = box["d"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
