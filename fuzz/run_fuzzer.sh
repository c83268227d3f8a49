#!/bin/bash
# Runs one libFuzzer target for SECONDS on a scratch copy of its committed seed corpus (new inputs
# the fuzzer finds stay out of the repository unless someone chooses to add them). A finding
# leaves crash-*/leak-*/timeout-* files in the current folder and a non-zero exit.
#   fuzz/run_fuzzer.sh BUILD/fuzz/fuzz_latent fuzz/corpus/latent 600
set -euo pipefail
bin=$1 seeds=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$seeds/." "$work/"
"$bin" -max_total_time="$seconds" -max_len=65536 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 "$work"
