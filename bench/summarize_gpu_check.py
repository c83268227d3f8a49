#!/usr/bin/python3
"""Turns scripts/gpu_check.sh's results.jsonl into the markdown tables of bench/RESULTS.md:
C++ against Python/PyTorch on the same computation, the time ratio (C++ ÷ Python, below 1 is
faster), peak GPU memory of each side, and the project's targets projected from the measurements."""

import json
import sys
from collections import OrderedDict


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def main():
    runs = OrderedDict()
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        runs.setdefault(rec["bench"], {})[rec["result"].get("impl", "?")] = rec["result"]

    print("### Optimisation (engine 1): Adam on W+, CLIP loss + L2, per step\n")
    print("| run | C++ ms/step | Python ms/step | C++/Python time | 300 steps, C++ | C++ peak GPU MB | Python peak GPU MB | final CLIP sim C++ / Python |")
    print("|---|---|---|---|---|---|---|---|")
    for tag, r in runs.items():
        if not tag.startswith("optimize"):
            continue
        c, p = r.get("cpp"), r.get("python")
        if p is None and tag.endswith(" +cuda graph"):  # C++ only: against the eager Python run
            p = runs.get(tag[: -len(" +cuda graph")], {}).get("python")
        cm = c["ms_per_step"] if c else None
        pm = p["ms_per_step"] if p else None
        print(f"| {tag[9:]} | {fmt(cm, 2)} | {fmt(pm, 2)} | {fmt(cm / pm if cm and pm else None, 2)} | "
              f"{fmt(cm * 0.3 if cm else None, 2)} s | {fmt(c and c.get('peak_device_mb'), 0)} | "
              f"{fmt(p and p.get('peak_device_mb'), 0)} | "
              f"{fmt(c and c.get('final_clip_similarity'), 4)} / {fmt(p and p.get('final_clip_similarity'), 4)} |")

    print("\n### Mapper (engine 2): training steps (batch 8, Adam) and inference (w + 0.1·M(w) → image)\n")
    print("| run | train ms/step C++ | Python | C++/Python | infer images/s C++ | Python | C++/Python time | train peak GPU MB C++ / Py | infer peak GPU MB C++ / Py |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tag, r in runs.items():
        if not tag.startswith("mapper"):
            continue
        c, p = r.get("cpp"), r.get("python")
        ct = c and c["train_ms_per_step"]
        pt = p and p["train_ms_per_step"]
        ci = c and c["infer_latents_per_second"]
        pi = p and p["infer_latents_per_second"]
        print(f"| {tag[7:]} | {fmt(ct, 1)} | {fmt(pt, 1)} | {fmt(ct / pt if ct and pt else None, 2)} | "
              f"{fmt(ci, 0)} | {fmt(pi, 0)} | {fmt(pi / ci if ci and pi else None, 2)} | "
              f"{fmt(c and c.get('train_peak_device_mb'), 0)} / {fmt(p and p.get('train_peak_device_mb'), 0)} | "
              f"{fmt(c and c.get('infer_peak_device_mb'), 0)} / {fmt(p and p.get('infer_peak_device_mb'), 0)} |")

    print("\n### Global directions (engine 3): channel renders (render + CLIP encode) and edit latency\n")
    print("| run | C++ renders/s (batch) | Python renders/s (batch) | C++/Python time | max abs Δ direction | "
          "5376 ch × 100 images, C++ | C++ edit ms | C++ peak GPU MB (prepare / edit) | Python peak GPU MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tag, r in runs.items():
        if not tag.startswith("global"):
            continue
        c, p = r.get("cpp"), r.get("python")
        cr = c and c["renders_per_second"]
        pr = p and p["renders_per_second"]
        full = 5376 * 100 * 2 / cr / 60 if cr else None
        print(f"| {tag[7:]} | {fmt(cr, 0)} ({c and c['batch']}) | {fmt(pr, 0)} ({p and p['batch']}) | "
              f"{fmt(pr / cr if cr and pr else None, 2)} | {fmt(p and p.get('max_abs_diff_vs_cpp'), 4)} | "
              f"{fmt(full, 1)} min | {fmt(c and c.get('edit_ms'), 2)} | "
              f"{fmt(c and c.get('prepare_peak_device_mb'), 0)} / {fmt(c and c.get('edit_peak_device_mb'), 0)} | "
              f"{fmt(p and p.get('prepare_peak_device_mb'), 0)} |")

    photo = [(t, r) for t, r in runs.items() if t.startswith("photo")]
    if photo:
        print("\n### Photos: e4e encode (input size → W+) and LPIPS forward + backward (256 px), fp32\n")
        print("| run | encoder ms/image C++ | Python | C++/Python | LPIPS ms/image C++ | Python | C++/Python | "
              "peak GPU MB C++ (encoder / LPIPS) | checksums equal |")
        print("|---|---|---|---|---|---|---|---|---|")
        for tag, r in photo:
            c, p = r.get("cpp") or {}, r.get("python") or {}
            ce, pe = c.get("encoder_ms_per_image"), p.get("encoder_ms_per_image")
            cl, pl = c.get("lpips_fwd_bwd_ms_per_image"), p.get("lpips_fwd_bwd_ms_per_image")
            same = (c.get("encoder_checksum") is not None and
                    abs(c["encoder_checksum"] - p.get("encoder_checksum", float("nan"))) < 1e-4)
            print(f"| {tag[6:]} | {fmt(ce, 2)} | {fmt(pe, 2)} | {fmt(ce / pe if ce and pe else None, 2)} | "
                  f"{fmt(cl, 2)} | {fmt(pl, 2)} | {fmt(cl / pl if cl and pl else None, 2)} | "
                  f"{fmt(c.get('encoder_peak_device_mb'), 0)} / {fmt(c.get('lpips_peak_device_mb'), 0)} | "
                  f"{'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
