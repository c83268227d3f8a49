#!/usr/bin/env bash
# Makes the bundles the tests run on, with the project's own exporter (CTest fixture
# `bundles`; nothing generated is committed). Usage: make_test_bundles.sh PYTHON SRC_DIR OUT_DIR FIXTURES_DIR
set -euo pipefail
py=$1 src=$2 out=$3 fixtures=$4
export=("$py" "$src/scripts/export_bundle.py")
rm -rf "$out" && mkdir -p "$out"

# tiny: random StyleGAN2 at 32 px (real architecture, narrow) + a tiny random CLIP on the
# demonstration bundle's own vocabulary (made by this project: models/demo/README.md), so that every
# test that needs a text model runs from this repository alone.
vocab_demo="$src/models/demo/vocab.txt.gz"
merges_demo=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['clip']['vocab_merges'])" \
  "$src/models/demo/manifest.json")
"${export[@]}" --random --resolution 32 --w-dim 32 --n-mlp 2 --channel-divisor 16 --seed 1 --out "$out/tiny"
"${export[@]}" --random-clip tiny --seed 2 --vocab "$vocab_demo" --vocab-merges "$merges_demo" --out "$out/tiny"
"${export[@]}" --random-identity 8 --seed 4 --out "$out/tiny"

# other: another rosinality checkpoint of a different size and channel layout, written to disk
# and exported through the same --stylegan path a user takes (nothing about sizes is hard-coded).
"${export[@]}" --random --resolution 16 --w-dim 24 --n-mlp 3 --channel-multiplier 1 --channel-divisor 32 \
  --seed 3 --out "$out/scratch" --save-checkpoint "$out/other16.pt"
rm -rf "$out/scratch"
"${export[@]}" --stylegan "$out/other16.pt" --out "$out/other"

# tiny64: the reference fixture checkpoint (parity tests).
if [ -f "$fixtures/stylegan2-rosinality/tiny64.pt" ]; then
  "${export[@]}" --stylegan "$fixtures/stylegan2-rosinality/tiny64.pt" --out "$out/tiny64"
else
  echo "note: $fixtures is absent: parity tests will skip"
fi
# clip_jit / clip_sd: OpenAI's tiny CLIP fixture in both distributed forms (a TorchScript archive
# and an fp16 state dict). Its text transformer is 32 wide with 2 heads, which OpenAI's width // 64
# rule cannot recover from the weights: the head count is given.
if [ -f "$fixtures/clip-openai/tiny_jit.pt" ]; then
  vocab="$fixtures/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz"
  "${export[@]}" --clip "$fixtures/clip-openai/tiny_jit.pt" --clip-text-heads 2 --vocab "$vocab" --out "$out/clip_jit"
  "${export[@]}" --clip "$fixtures/clip-openai/tiny_state_dict.pt" --clip-text-heads 2 --vocab "$vocab" --out "$out/clip_sd"
fi
# irse50_narrow: the ArcFace fixture (real depth and names, widths / 4).
if [ -f "$fixtures/arcface-irse50/narrow.pth" ]; then
  "${export[@]}" --identity "$fixtures/arcface-irse50/narrow.pth" --out "$out/irse50_narrow"
fi
# nvidia / nvidia_cond: generators in NVIDIA's pickle format (the reference pickles made with
# NVIDIA's code when present, else pickles laid out the same way by tests/python/nvidia_pickle.py),
# each with a tiny random CLIP on the demonstration bundle's own vocabulary and a tiny identity
# model, so every engine runs on an NVIDIA bundle from this repository alone.
for kind in nvidia nvidia_cond; do
  if [ "$kind" = nvidia ]; then fixture=ada_tiny64 synth=(--resolution 32 --z-dim 24); else
    fixture=ada_cond32 synth=(--resolution 32 --c-dim 3); fi
  pkl="$fixtures/stylegan-nvidia/$fixture.pkl"
  if [ ! -f "$pkl" ]; then
    pkl="$out/$kind.pkl"
    "$py" "$src/tests/python/nvidia_pickle.py" "$pkl" "${synth[@]}" --seed 7
  fi
  "${export[@]}" --stylegan "$pkl" --out "$out/$kind"
  "${export[@]}" --random-clip tiny --seed 2 --vocab "$vocab_demo" --vocab-merges "$merges_demo" \
    --out "$out/$kind"
  "${export[@]}" --random-identity 8 --seed 4 --out "$out/$kind"
done
# sg3t / sg3r: StyleGAN3 (T and R) from NVIDIA's pickles — the reference pickles when present,
# else pickles laid out the same way by tests/python/sg3_pickle.py — with the same tiny CLIP and
# identity model, so every engine runs on a StyleGAN3 bundle from this repository alone.
for cfg in t r; do
  pkl="$fixtures/stylegan-nvidia/sg3${cfg}_tiny32.pkl"
  if [ ! -f "$pkl" ]; then
    pkl="$out/sg3$cfg.pkl"
    "$py" "$src/tests/python/sg3_pickle.py" --config "$cfg" --resolution 32 --seed 11 --out "$pkl"
  fi
  "${export[@]}" --stylegan "$pkl" --out "$out/sg3$cfg"
  "${export[@]}" --random-clip tiny --seed 2 --vocab "$vocab_demo" --vocab-merges "$merges_demo" \
    --out "$out/sg3$cfg"
  "${export[@]}" --random-identity 8 --seed 4 --out "$out/sg3$cfg"
done
echo "test bundles ready in $out"
