#!/usr/bin/env bash
# The README's second command: run the whole test suite on the build from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
