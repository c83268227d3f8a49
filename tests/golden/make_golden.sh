#!/bin/bash
# Regenerates the golden outputs in tests/golden/expected from the stored latents in
# tests/golden/latents, with the tiny test bundle (made by the test run: build/tests/testdata/tiny).
# Run it only when a change to the outputs is intended, and say why in the commit: the golden
# test (tests/e2e/test_golden.cpp) fails on any drift beyond `styleclip compare`'s tolerances.
# These files detect change; correctness is tested against ../shared/fixtures.
#
#   tests/golden/make_golden.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
bin=$build/src/styleclip
bundle=$build/tests/testdata/tiny
[ -x "$bin" ] || { echo "make_golden: no styleclip binary at $bin (build first)" >&2; exit 2; }
[ -f "$bundle/manifest.json" ] || { echo "make_golden: no tiny bundle at $bundle (run the tests once)" >&2; exit 2; }
if [ ! -d "$here/latents" ]; then
  mkdir -p "$here/latents"
  /usr/bin/python3 - "$here/latents" <<'PY'
import sys, torch
for k, name in enumerate(["a", "b", "c"]):
    torch.manual_seed(1000 + k)
    torch.save(torch.randn(8, 32) * 0.7, f"{sys.argv[1]}/{name}.pt")
PY
fi
rm -rf "$here/expected"
export OMP_NUM_THREADS=1
# The exact commands the golden test runs (keep them in step with test_golden.cpp).
"$bin" generate --models "$bundle" --latent "$here/latents/a.pt" --latent "$here/latents/b.pt" \
  --latent "$here/latents/c.pt" --out "$here/expected/generate" -q
"$bin" edit --models "$bundle" --text "a red face" --steps 3 --compare "$here/latents" \
  --out "$here/expected/edit" -q
echo "wrote $here/expected"
