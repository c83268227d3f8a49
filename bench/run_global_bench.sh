#!/usr/bin/env bash
# Global-direction preparation throughput (channel-renders per second) and edit latency: the C++
# engine (batched renders) against the reference procedure written plainly in Python (one render
# per call, bench/global_reference.py), on the same random-weight bundles, alternating runs.
# Usage: bench/run_global_bench.sh [path/to/bench_global]   (run from the repository root)
set -euo pipefail
bin=${1:-build/bench/bench_global}
py=/usr/bin/python3
vocab=${STYLECLIP_VOCAB:-../shared/fixtures/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_bundle() {  # name resolution w_dim divisor
  $py scripts/export_bundle.py --random --resolution "$2" --w-dim "$3" --n-mlp 4 --channel-divisor "$4" \
    --out "$work/$1" >/dev/null
  $py scripts/export_bundle.py --random-clip tiny --vocab "$vocab" --out "$work/$1" >/dev/null
}
make_bundle b64 64 64 8
make_bundle b256 256 128 4
echo "| bundle | C++ renders/s (batch) | Python renders/s (batch 1) | speed-up | max |Δ dir| | C++ edit ms | C++ text direction ms | C++ peak RSS MB | Python peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|"
for b in b64 b256; do
  batch=16; [ "$b" = b256 ] && batch=1  # the CPU defaults of global prepare
  mkdir -p "$work/$b.dump"
  best_c=0 best_p=0 line_c="" line_p=""
  for rep in 1 2; do
    c=$("$bin" --models "$work/$b" --channels 8 --images 4 --batch "$batch" --samples 2000 --threads 2 --dump "$work/$b.dump")
    p=$($py bench/global_reference.py --models "$work/$b" --dump "$work/$b.dump" --channels 8 --threads 2)
    rc=$(echo "$c" | $py -c 'import json,sys; print(json.load(sys.stdin)["renders_per_second"])')
    rp=$(echo "$p" | $py -c 'import json,sys; print(json.load(sys.stdin)["renders_per_second"])')
    if $py -c "import sys; sys.exit(0 if $rc > $best_c else 1)"; then best_c=$rc line_c=$c; fi
    if $py -c "import sys; sys.exit(0 if $rp > $best_p else 1)"; then best_p=$rp line_p=$p; fi
  done
  $py - "$b" "$line_c" "$line_p" <<'PY'
import json, sys
name, c, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {name[1:]} px | {c['renders_per_second']:.0f} ({c['batch']}) | {p['renders_per_second']:.0f} | "
      f"{c['renders_per_second'] / p['renders_per_second']:.2f}x | {p['max_abs_diff_vs_cpp']:.1e} | "
      f"{c['edit_ms']:.1f} | {c['text_direction_ms']:.0f} | {c['peak_rss_mb']:.0f} | {p['peak_rss_mb']:.0f} |")
PY
done
