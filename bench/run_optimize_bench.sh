#!/usr/bin/env bash
# Engine 1 benchmark: styleclip::optimize (C++) against the same loop in Python/PyTorch
# (bench/optimize_reference.py) on the same random-weight TorchScript bundles, same inputs, same
# thread count. Prints a markdown table on stdout (progress on stderr). See bench/README.md.
#
#   bench/run_optimize_bench.sh [path/to/bench_optimize]     (default: build/bench/bench_optimize)
#
# Environment: PYTHON (default /usr/bin/python3, which has Debian's torch), THREADS (2),
# REPS (2: C++, Python, C++, Python; the best time of each is reported), CONFIGS (default
# "64 256 256-vit"), QUIET_WAIT (20: at most this many seconds to wait before each run for the
# machine to go idle), RETRIES (2: repeats of a run that shared the CPU with other processes),
# RAW (a file to keep the JSON lines in), BATCHES (default "1 4"), UPSAMPLE (1: also time Python
# with the reference's --resize upsample; 0 skips that run). STYLECLIP_CPU_ALLOCATOR=system in
# the environment gives the C++ side LibTorch's own CPU allocator (for comparisons); PY_ALLOCATOR=
# path/to/libstyleclip_python_allocator.so gives the Python side styleclip's (with_styleclip_allocator.py).
# It builds nothing: build bench_optimize first (see bench/README.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${1:-$ROOT/build/bench/bench_optimize}"
PY="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-2}"
REPS="${REPS:-2}"
CONFIGS="${CONFIGS:-64 256 256-vit}"
BATCHES="${BATCHES:-1 4}"
UPSAMPLE="${UPSAMPLE:-1}"
QUIET_WAIT="${QUIET_WAIT:-20}"
RETRIES="${RETRIES:-2}"
VOCAB="${VOCAB:-$ROOT/../shared/fixtures/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz}"
REF="$ROOT/bench/optimize_reference.py"

die() { echo "run_optimize_bench: error: $*" >&2; exit 2; }
[[ -x "$BENCH" ]] || die "'$BENCH' is not an executable: build it first (see bench/README.md) or pass its path"
# shellcheck source=bench/python_reference.sh
source "$ROOT/bench/python_reference.sh"
[[ -f "$VOCAB" ]] || die "CLIP vocabulary '$VOCAB' not found: set VOCAB=path/to/bpe_simple_vocab_16e6.txt.gz"
"$PY" -c 'import torch' 2>/dev/null || die "'$PY' cannot import torch: set PYTHON to a Python with PyTorch"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/optbench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
RAWFILE="${RAW:-$TMP/raw.jsonl}"
: >"$RAWFILE"

# config name → exporter flags, timed steps, warm-up steps
config_flags() {
  case "$1" in
    64) echo "--random --resolution 64 --w-dim 64 --n-mlp 4 --channel-divisor 8 --random-clip tiny" ;;
    256) echo "--random --resolution 256 --w-dim 128 --n-mlp 4 --channel-divisor 4 --random-clip tiny" ;;
    256-vit) echo "--random --resolution 256 --w-dim 128 --n-mlp 4 --channel-divisor 4 --random-clip vit-b32" ;;
    1024-vit) echo "--random --resolution 1024 --w-dim 512 --n-mlp 8 --channel-multiplier 2 --channel-divisor 1 --random-clip vit-b32" ;;
    *) die "unknown configuration '$1' (known: 64 256 256-vit 1024-vit)" ;;
  esac
}
config_steps() { case "$1" in 64) echo "30 5" ;; 256) echo "10 3" ;; 256-vit) echo "5 2" ;; 1024-vit) echo "3 1" ;; esac; }
config_label() {
  case "$1" in
    64) echo "64 px G (w 64, ch/8) + tiny CLIP 32 px" ;;
    256) echo "256 px G (w 128, ch/4) + tiny CLIP 32 px" ;;
    256-vit) echo "256 px G (w 128, ch/4) + ViT-B/32-size CLIP 224 px" ;;
    1024-vit) echo "FFHQ config-f 1024 px G + ViT-B/32-size CLIP 224 px" ;;
  esac
}

# shellcheck source=bench/measure.sh
source "$ROOT/bench/measure.sh"

ROWS=()
for cfg in $CONFIGS; do
  flags="$(config_flags "$cfg")"
  read -r steps warmup <<<"$(config_steps "$cfg")"
  dir="$TMP/bundle-$cfg"
  echo "== $cfg: exporting bundle" >&2
  # shellcheck disable=SC2086
  "$PY" "$ROOT/scripts/export_bundle.py" $flags --vocab "$VOCAB" --out "$dir" >&2
  "$BENCH" --models "$dir" --dump-text "$TMP/text-$cfg.pt"
  for batch in $BATCHES; do
    start="$TMP/start-$cfg-$batch.pt"
    "$BENCH" --models "$dir" --batch "$batch" --dump-start "$start"
    common=(--models "$dir" --steps "$steps" --warmup "$warmup" --threads "$THREADS" --json)
    cpp_ms=() py_ms=() cpp_rss=() py_rss=()
    for ((rep = 1; rep <= REPS; rep++)); do
      echo "== $cfg batch $batch rep $rep: C++" >&2
      j="$(run_one "$BENCH" "${common[@]}" --batch "$batch")"
      echo "$j" >&2
      cpp_ms+=("$(field "$j" ms_per_step)") cpp_rss+=("$(field "$j" peak_rss_mb)")
      echo "== $cfg batch $batch rep $rep: Python" >&2
      j="$(run_one "${PYREF[@]}" "${common[@]}" --text-embedding "$TMP/text-$cfg.pt" --start "$start")"
      echo "$j" >&2
      py_ms+=("$(field "$j" ms_per_step)") py_rss+=("$(field "$j" peak_rss_mb)")
    done
    up_ms="" up_rss=""
    if [[ "$UPSAMPLE" == 1 ]]; then
      echo "== $cfg batch $batch: Python, --resize upsample" >&2
      j="$(run_one "${PYREF[@]}" "${common[@]}" --text-embedding "$TMP/text-$cfg.pt" --start "$start" --resize upsample)"
      echo "$j" >&2
      up_ms="$(fmt "$(field "$j" ms_per_step)")" up_rss="$(fmt "$(field "$j" peak_rss_mb)" 0)"
    fi
    c="$(best "${cpp_ms[@]}")" p="$(best "${py_ms[@]}")"
    ratio="$("$PY" -c "print(f'{$c / $p:.2f}')")"
    ROWS+=("| $(config_label "$cfg") | $batch | $steps (+$warmup) | $(fmt "$c") | $(fmt "$p") | $ratio | $(fmt "$(maxof "${cpp_rss[@]}")" 0) | $(fmt "$(maxof "${py_rss[@]}")" 0) | ${up_rss:-–} | ${up_ms:-–} |")
  done
  rm -rf "$dir"
done

echo "| configuration | batch | timed steps (+warm-up) | C++ ms/step | Python ms/step | C++/Python | C++ peak RSS MB | Python peak RSS MB | Python peak RSS MB, --resize upsample | Python ms/step, --resize upsample |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "threads $THREADS; best of $REPS alternating runs per side (C++, Python, C++, Python); peak RSS: the largest of those runs; the upsample column is one run; C++ CPU allocator: ${STYLECLIP_CPU_ALLOCATOR:-styleclip (src/cpu_allocator.cpp)}; Python's: $PY_ALLOCATOR_LABEL."
CONTENDED="$(grep -c '"contended": true' "$RAWFILE" || true)"
if ((CONTENDED > 0)); then
  echo "note: $CONTENDED of the runs shared the CPU with other processes even after retries (see \"contended\" in the raw JSON)."
fi
