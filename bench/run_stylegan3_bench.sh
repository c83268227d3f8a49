#!/usr/bin/env bash
# StyleGAN3 at the published sizes: a render and an optimisation step at 1024 px for the T and R
# configurations (random weights; the sizes of NVIDIA's FFHQ networks), C++ against the same
# computation in Python on the same generator.pt, in the same run. Prints a markdown table on
# stdout (progress on stderr). See bench/README.md.
#
#   bench/run_stylegan3_bench.sh [path/to/bench_optimize]     (default: build/bench/bench_optimize)
#
# Environment: PYTHON (/usr/bin/python3), THREADS (2), CONFIGS ("t r"), RESOLUTION (1024),
# RENDERS (2 timed renders after one untimed), STEPS ("2 1": timed steps and warm-up steps of the
# optimisation; "0 0" times renders only: an optimisation step at 1024 px needs more than 24 GB
# of memory on the CPU), QUIET_WAIT (20), RETRIES (1), RAW (a file to keep the JSON lines in),
# PY_ALLOCATOR (path/to/libstyleclip_python_allocator.so: the Python side runs with styleclip's CPU
# allocator, through bench/with_styleclip_allocator.py, as in run_optimize_bench.sh). The CLIP
# model is a random ViT-B/32-size one on the demonstration bundle's vocabulary. It builds
# nothing: build bench_optimize first (see bench/README.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${1:-$ROOT/build/bench/bench_optimize}"
PY="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-2}"
CONFIGS="${CONFIGS:-t r}"
RESOLUTION="${RESOLUTION:-1024}"
RENDERS="${RENDERS:-2}"
read -r STEPS WARMUP <<<"${STEPS:-2 1}"
QUIET_WAIT="${QUIET_WAIT:-20}"
RETRIES="${RETRIES:-1}"
REF="$ROOT/bench/optimize_reference.py"
VOCAB="$ROOT/models/demo/vocab.txt.gz"

die() { echo "run_stylegan3_bench: error: $*" >&2; exit 2; }
# shellcheck source=bench/python_reference.sh
source "$ROOT/bench/python_reference.sh"
[[ -x "$BENCH" ]] || die "'$BENCH' is not an executable: build it first (see bench/README.md) or pass its path"
"$PY" -c 'import torch' 2>/dev/null || die "'$PY' cannot import torch: set PYTHON to a Python with PyTorch"
MERGES="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['clip']['vocab_merges'])" "$ROOT/models/demo/manifest.json")"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sg3bench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
RAWFILE="${RAW:-$TMP/raw.jsonl}"
: >"$RAWFILE"
# shellcheck source=bench/measure.sh
source "$ROOT/bench/measure.sh"

# NVIDIA's FFHQ 1024 networks: T channel_base 32768, channel_max 512; R twice both (and 1×1
# convolutions, radial filters); 14 layers, w 512, z 512, 2 mapping layers.
sizes() { case "$1" in t) echo "32768 512" ;; r) echo "65536 1024" ;; *) die "unknown config '$1' (t, r)" ;; esac; }

ROWS=()
for cfg in $CONFIGS; do
  read -r base cmax <<<"$(sizes "$cfg")"
  dir="$TMP/bundle-$cfg"
  echo "== StyleGAN3-${cfg^^} $RESOLUTION px: writing a random pickle and exporting it" >&2
  "$PY" "$ROOT/tests/python/sg3_pickle.py" --config "$cfg" --resolution "$RESOLUTION" --w-dim 512 \
    --z-dim 512 --channel-base "$base" --channel-max "$cmax" --mapping-layers 2 --seed 1 \
    --out "$TMP/g.pkl" >&2
  export_s="$( { /usr/bin/time -f "%e" "$PY" "$ROOT/scripts/export_bundle.py" --stylegan "$TMP/g.pkl" \
    --out "$dir" >&2; } 2>&1 | tail -1)"
  rm -f "$TMP/g.pkl"
  "$PY" "$ROOT/scripts/export_bundle.py" --random-clip vit-b32 --vocab "$VOCAB" --vocab-merges "$MERGES" \
    --seed 2 --out "$dir" >&2
  "$BENCH" --models "$dir" --dump-text "$TMP/text.pt"
  "$BENCH" --models "$dir" --batch 1 --dump-start "$TMP/start.pt"
  py_in=(--text-embedding "$TMP/text.pt" --start "$TMP/start.pt")
  echo "== render: C++" >&2
  c="$(run_one "$BENCH" --models "$dir" --render "$RENDERS" --threads "$THREADS" --json)"; echo "$c" >&2
  echo "== render: Python" >&2
  p="$(run_one "${PYREF[@]}" --models "$dir" "${py_in[@]}" --render "$RENDERS" --threads "$THREADS" --json)"; echo "$p" >&2
  cr="$(field "$c" ms_per_render)" pr="$(field "$p" ms_per_render)"
  ROWS+=("| StyleGAN3-${cfg^^} $RESOLUTION px | render (batch 1) | $(fmt "$cr") | $(fmt "$pr") | $("$PY" -c "print(f'{$cr / $pr:.2f}')") | $(fmt "$(field "$c" peak_rss_mb)" 0) | $(fmt "$(field "$p" peak_rss_mb)" 0) |")
  if ((STEPS == 0)); then rm -rf "$dir"; continue; fi
  common=(--models "$dir" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --json)
  echo "== optimisation step: C++" >&2
  c="$(run_one "$BENCH" "${common[@]}" --batch 1)"; echo "$c" >&2
  echo "== optimisation step: Python" >&2
  p="$(run_one "${PYREF[@]}" "${common[@]}" "${py_in[@]}")"; echo "$p" >&2
  cs="$(field "$c" ms_per_step)" ps="$(field "$p" ms_per_step)"
  ROWS+=("| StyleGAN3-${cfg^^} $RESOLUTION px + ViT-B/32-size CLIP | optimisation step (batch 1) | $(fmt "$cs") | $(fmt "$ps") | $("$PY" -c "print(f'{$cs / $ps:.2f}')") | $(fmt "$(field "$c" peak_rss_mb)" 0) | $(fmt "$(field "$p" peak_rss_mb)" 0) |")
  echo "   (export of the $cfg pickle: $export_s s)" >&2
  rm -rf "$dir"
done

echo "| generator | what | C++ ms | Python ms | C++/Python | C++ peak RSS MB | Python peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "threads $THREADS; one run per side (C++ first); $RENDERS timed renders after one untimed; $STEPS timed optimisation steps after $WARMUP warm-up; published FFHQ channel sizes at every resolution; C++ CPU allocator: styleclip's (src/cpu_allocator.cpp); Python's: $PY_ALLOCATOR_LABEL."
CONTENDED="$(grep -c '"contended": true' "$RAWFILE" || true)"
if ((CONTENDED > 0)); then
  echo "note: $CONTENDED of the runs shared the CPU with other processes even after retries (see \"contended\" in the raw JSON)."
fi
