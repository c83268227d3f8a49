#!/usr/bin/env bash
# Pivotal tuning against the projector alone: reconstruction of photos the generator never made,
# and the time of a tuning step at 1024 px. Prints a markdown table on stdout (progress on stderr).
#
#   bench/run_pti_bench.sh PHOTO...            (e.g. any RGB pictures; resized to the generator)
#
# 1. With MODELS (default: the demonstration bundle), each photo is inverted as an aligned crop
#    twice: --with optimize (the projector, STEPS steps) and --with pti (the same projector, then
#    PTI_STEPS tuning steps at PTI_LR): PSNR (and LPIPS / identity where the bundle has those
#    models) of the projector's answer and of the tuned generator, and the seconds of each.
# 2. A random-weight generator of FFHQ config-f's size (1024 px, w 512, 8 mapping layers,
#    channel multiplier 2) times TUNE_1024 tuning steps on one picture; the time per photo at
#    the paper's 350 steps is that × 350 / TUNE_1024 (pixel loss only: a random bundle has no
#    LPIPS model, whose VGG at 256 px adds to each step).
#
# Environment: STYLECLIP (build/src/styleclip), PYTHON (/usr/bin/python3), MODELS (models/demo),
# STEPS (300), PTI_STEPS (350), PTI_LR (3e-4), TUNE_1024 (3; 0 skips part 2), THREADS (2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SC="${STYLECLIP:-$ROOT/build/src/styleclip}"
PY="${PYTHON:-/usr/bin/python3}"
MODELS="${MODELS:-$ROOT/models/demo}"
STEPS="${STEPS:-300}" PTI_STEPS="${PTI_STEPS:-350}" PTI_LR="${PTI_LR:-3e-4}"
TUNE_1024="${TUNE_1024:-3}" THREADS="${THREADS:-2}"
die() { echo "run_pti_bench: error: $*" >&2; exit 2; }
(($# > 0)) || die "give the photos to invert (e.g. bench/run_pti_bench.sh a.png b.jpg)"
[[ -x "$SC" ]] || die "'$SC' is not an executable: build styleclip first (scripts/setup.sh)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ptibench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

metric() {  # metric SIDECAR EXPR: a Python expression over the sidecar `d`
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print("–" if v is None else (f"{v:.3f}" if isinstance(v, float) else v))' "$1" "$2"
}

echo "| photo | projector PSNR dB | PTI PSNR dB | projector LPIPS | PTI LPIPS | projector identity | PTI identity | projector s | PTI tuning s |"
echo "|---|---|---|---|---|---|---|---|---|"
for photo in "$@"; do
  [[ -f "$photo" ]] || die "'$photo' does not exist"
  name="$(basename "${photo%.*}")"
  echo "== $name" >&2
  "$SC" --threads "$THREADS" -q invert --models "$MODELS" --aligned --steps "$STEPS" \
    --out "$TMP/proj" "$photo" >/dev/null
  "$SC" --threads "$THREADS" -q invert --models "$MODELS" --aligned --steps "$STEPS" --with pti \
    --pti-steps "$PTI_STEPS" --pti-lr "$PTI_LR" --out "$TMP/pti" "$photo" >/dev/null
  p="$TMP/proj/$name.invert.json" t="$TMP/pti/$name.invert.json"
  echo "| $name | $(metric "$p" 'd["metrics"]["psnr"]') | $(metric "$t" 'd["metrics"]["pti"]["psnr"]') | $(metric "$t" 'd["metrics"]["pti"]["lpips_pivot"]') | $(metric "$t" 'd["metrics"]["pti"]["lpips"]') | $(metric "$t" 'd["metrics"]["pti"].get("identity_similarity_pivot")') | $(metric "$t" 'd["metrics"]["pti"].get("identity_similarity")') | $(metric "$p" 'd["timing"]["seconds"]') | $(metric "$t" 'd["timing"]["pti_seconds"]') |"
done
echo
echo "bundle: $MODELS; projector $STEPS steps; PTI $PTI_STEPS steps at lr $PTI_LR; threads $THREADS; \"identity\": the bundle's identity model's cosine with the photo (– without one); PTI's pivot is the projector's answer (its PSNR equals the projector column)."

if ((TUNE_1024 > 0)); then
  echo "== 1024 px: a random FFHQ config-f-size generator" >&2
  "$PY" "$ROOT/scripts/export_bundle.py" --random --resolution 1024 --w-dim 512 --n-mlp 8 \
    --channel-multiplier 2 --channel-divisor 1 --seed 0 --out "$TMP/g1024" >&2
  "$SC" -q generate --models "$TMP/g1024" --seed 1 --out "$TMP/g1024-img" >/dev/null
  /usr/bin/time -f "%M" -o "$TMP/rss" "$SC" --threads "$THREADS" -q invert --models "$TMP/g1024" \
    --aligned --steps 1 --clip-lambda 0 --with pti --pti-steps "$TUNE_1024" --out "$TMP/p1024" \
    "$TMP/g1024-img/seed0001.png" >/dev/null
  s="$(metric "$TMP/p1024/seed0001.invert.json" 'd["timing"]["pti_seconds"]')"
  echo
  echo "1024 px (random config-f-size generator, pixel loss): $TUNE_1024 tuning steps in $s s, so $("$PY" -c "print(f'{$s / $TUNE_1024:.2f}')") s per step and about $("$PY" -c "print(f'{$s / $TUNE_1024 * 350 / 60:.0f}')") min per photo at 350 steps; peak RSS $(($(cat "$TMP/rss") / 1024)) MB."
fi
