#!/usr/bin/env bash
# The generator's source format costs nothing at run time: an optimisation step (C++, the same
# bench_optimize) on a bundle exported from an NVIDIA network pickle against one exported from a
# rosinality checkpoint of the same shape (FFHQ config-f 1024 px by default, random weights, the
# same ViT-B/32-size CLIP in both), alternating runs, plus the time each export takes and the
# peak memory. Prints a markdown table on stdout (progress on stderr).
#
#   bench/run_format_bench.sh [path/to/bench_optimize]     (default: build/bench/bench_optimize)
#
# Environment: PYTHON (/usr/bin/python3), THREADS (2), REPS (2), STEPS (3), WARMUP (1),
# RESOLUTION (1024; with w 512, 8 mapping layers and NVIDIA's channel_base 32768 / channel_max 512,
# which are rosinality's config-f widths), QUIET_WAIT (20), RETRIES (2), RAW (keep the JSON lines).
# The CLIP vocabulary is the demonstration bundle's (models/demo/vocab.txt.gz): tokens do not
# change the cost of a step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${1:-$ROOT/build/bench/bench_optimize}"
PY="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-2}" REPS="${REPS:-2}" STEPS="${STEPS:-3}" WARMUP="${WARMUP:-1}"
RESOLUTION="${RESOLUTION:-1024}" QUIET_WAIT="${QUIET_WAIT:-20}" RETRIES="${RETRIES:-2}"

die() { echo "run_format_bench: error: $*" >&2; exit 2; }
[[ -x "$BENCH" ]] || die "'$BENCH' is not an executable: build it first (see bench/README.md) or pass its path"
"$PY" -c 'import torch' 2>/dev/null || die "'$PY' cannot import torch: set PYTHON to a Python with PyTorch"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/formatbench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
RAWFILE="${RAW:-$TMP/raw.jsonl}"
: >"$RAWFILE"
# shellcheck source=bench/measure.sh
source "$ROOT/bench/measure.sh"

EXPORT=("$PY" "$ROOT/scripts/export_bundle.py")
merges="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['clip']['vocab_merges'])" "$ROOT/models/demo/manifest.json")"
seconds() { local t0; t0="$(date +%s.%N)"; "$@" >&2; "$PY" -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0"; }

echo "== writing the source files ($RESOLUTION px)" >&2
"$PY" "$ROOT/tests/python/nvidia_pickle.py" "$TMP/net.pkl" --resolution "$RESOLUTION" --z-dim 512 --w-dim 512 \
  --channel-base 32768 --channel-max 512 --mapping-layers 8 --seed 1
"${EXPORT[@]}" --random --resolution "$RESOLUTION" --w-dim 512 --n-mlp 8 --channel-multiplier 2 \
  --channel-divisor 1 --seed 1 --out "$TMP/scratch" --save-checkpoint "$TMP/rosinality.pt" >&2
echo "== exporting" >&2
export_nv="$(seconds "${EXPORT[@]}" --stylegan "$TMP/net.pkl" --out "$TMP/nvidia")"
export_ro="$(seconds "${EXPORT[@]}" --stylegan "$TMP/rosinality.pt" --out "$TMP/rosinality")"
for b in nvidia rosinality; do
  "${EXPORT[@]}" --random-clip vit-b32 --seed 2 --vocab "$ROOT/models/demo/vocab.txt.gz" \
    --vocab-merges "$merges" --out "$TMP/$b" >&2
done

declare -A MS RSS
for ((rep = 1; rep <= REPS; rep++)); do
  for b in nvidia rosinality; do
    echo "== rep $rep: $b" >&2
    j="$(run_one "$BENCH" --models "$TMP/$b" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --json)"
    echo "$j" >&2
    MS[$b]+="$(field "$j" ms_per_step) " RSS[$b]+="$(field "$j" peak_rss_mb) "
  done
done
# shellcheck disable=SC2086
nv="$(best ${MS[nvidia]})" ro="$(best ${MS[rosinality]})"
echo "| source format ($RESOLUTION px G + ViT-B/32-size CLIP) | export s | C++ ms/step (best of $REPS) | peak RSS MB |"
echo "|---|---|---|---|"
# shellcheck disable=SC2086
echo "| NVIDIA network pickle | $export_nv | $(fmt "$nv") | $(fmt "$(maxof ${RSS[nvidia]})" 0) |"
# shellcheck disable=SC2086
echo "| rosinality checkpoint | $export_ro | $(fmt "$ro") | $(fmt "$(maxof ${RSS[rosinality]})" 0) |"
echo
echo "NVIDIA ÷ rosinality time per step: $("$PY" -c "print(f'{$nv / $ro:.3f}')"); threads $THREADS, $STEPS timed steps (+$WARMUP warm-up), batch 1, alternating runs."
