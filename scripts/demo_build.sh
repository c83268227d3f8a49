#!/bin/bash
# Builds the demonstration bundle models/demo from nothing but this repository:
#   1. trains the demo CLIP and its vocabulary      (scripts/demo_train_clip.py)
#   2. trains the demo StyleGAN2 generator          (scripts/demo_train_generator.py)
#   3. exports both with the project's exporter     (scripts/export_bundle.py)
#   4. prepares the global directions               (styleclip global prepare)
#   5. trains one latent mapper ("a red shape")     (styleclip mapper train)
# The two trainings checkpoint and resume (and are skipped once their result exists), so the
# script can be rerun after an interruption; export, preparation and mapper (minutes) are redone
# into models/demo.tmp, which replaces models/demo only when complete. Wall times are appended
# to WORK/times.txt.
#
#   scripts/demo_build.sh [WORK_DIR=build/demo-train] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/demo-train}
threads=${2:-2}
py=/usr/bin/python3
bin=build/src/styleclip
out=models/demo
mkdir -p "$work"
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$work/times.txt"; }

if [ ! -f "$work/clip/clip_state_dict.pt" ]; then
  stamp "clip: training"
  $py scripts/demo_train_clip.py --out "$work/clip" --steps 3000 --batch 96 --hard-negatives 0.5 --threads "$threads"
fi
# The generator in two runs, as the shipped one was made (models/demo/README.md): the plain
# synthesis training (a 20,000-step schedule, stopped at step 12,854), then a fine-tune from
# there with colour blends and per-row W+ noise (a 17,000-step schedule, run to its end: GEN_STOP = 17000).
GEN_STOP=${GEN_STOP:-17000}
if [ ! -f "$work/generator/generator_ckpt.pt" ]; then
  stamp "generator: training"
  $py scripts/demo_train_generator.py --out "$work/generator-base" --synthesis-steps 20000 --stop-at 12854 \
    --threads "$threads"
  mkdir -p "$work/generator"
  [ -f "$work/generator/train_ckpt.pt" ] || cp "$work/generator-base/train_ckpt.pt" "$work/generator/"
  $py scripts/demo_train_generator.py --out "$work/generator" --synthesis-steps 17000 --mix-colours 0.5 \
    --layer-noise 0.15 --stop-at "$GEN_STOP" --threads "$threads"
  $py scripts/demo_train_generator.py --out "$work/generator" --synthesis-steps 17000 --export-now --w-scale 2
fi
stamp "export"
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
merges=$($py -c "import gzip,sys; print(sum(1 for _ in gzip.open(sys.argv[1], 'rt')) - 1)" "$work/clip/vocab.txt.gz")
$py scripts/export_bundle.py --stylegan "$work/generator/generator_ckpt.pt" --lr-mlp 1 \
  --clip "$work/clip/clip_state_dict.pt" --clip-text-heads 2 --vocab "$work/clip/vocab.txt.gz" \
  --vocab-merges "$merges" --out "$out.tmp"
stamp "global prepare"
OMP_NUM_THREADS=$threads $bin global prepare --models "$out.tmp" --samples 20000 --images 100 --seed 0
stamp "mapper train"
OMP_NUM_THREADS=$threads $bin mapper train --models "$out.tmp" --text "a red shape" --sample 2000 \
  --steps 1000 --batch 8 --seed 0 --out "$out.tmp/red.mapper.pt"
rm -rf "$out.tmp/red.mapper.pt.ckpt"
# Keep the README and training records that live beside the bundle.
[ -f "$out/README.md" ] && cp "$out/README.md" "$out.tmp/README.md"
cp "$work/clip/clip_curves.png" "$work/generator/generator_curves.png" "$out.tmp/" 2>/dev/null || true
cp "$work/clip/clip_eval.json" "$work/generator/generator_eval.json" "$out.tmp/" 2>/dev/null || true
rm -rf "$out.old" && { [ ! -d "$out" ] || mv "$out" "$out.old"; } && mv "$out.tmp" "$out" && rm -rf "$out.old"
stamp "done: $(du -sh "$out" | cut -f1) in $out"
