#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the main job once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake --preset release >/dev/null  # CMakePresets.json: build/, Release
cmake --build --preset release -j"$(nproc)"
if [ -f models/demo/manifest.json ]; then
  # The main job on the bundled demonstration model: a real text edit (models/demo/README.md).
  build/src/styleclip info --models models/demo
  build/src/styleclip edit --text "a blue shape" --seed 0-3 --compare --out build/out/edit
  echo "styleclip is built: build/src/styleclip (before | after pictures: build/out/edit/*.compare.png)"
else
  # Without the demonstration bundle: show the pipeline on a random-weight generator made by the
  # exporter (its pictures are noise-like patterns, not meaningful edits).
  models=build/models/random64
  [ -f "$models/manifest.json" ] || /usr/bin/python3 scripts/export_bundle.py --random --resolution 64 \
    --w-dim 64 --n-mlp 4 --channel-divisor 8 --seed 0 --out "$models" >/dev/null
  build/src/styleclip info --models "$models"
  build/src/styleclip generate --models "$models" --seed 0-3 --out build/out/generate
  echo "styleclip is built: build/src/styleclip (outputs above are in build/out/generate)"
fi
