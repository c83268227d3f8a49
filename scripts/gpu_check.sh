#!/usr/bin/env bash
# gpu_check.sh — build the engines against this machine's PyTorch LibTorch, run the `gpu` tests
# and time every engine against the same computation in Python/PyTorch.
#
# Made for a GPU machine that has PyTorch 2.x with CUDA, CMake and a C++ compiler but no internet,
# no OpenCV and none of the other Debian development packages. What the build needs besides
# LibTorch (nlohmann-json, ICU, zlib, GoogleTest) comes as Debian packages, fetched
# beforehand on a Debian machine and unpacked here into a private prefix:
#
#   scripts/gpu_check.sh fetch-deps [DIR]        # on Debian 12, with apt: .debs into DIR (.gpu-deps)
#   scripts/gpu_check.sh run [options]           # on the GPU machine, from the repository root
#
# run options:
#   --deps DIR     the fetched .debs (default .gpu-deps; without it the system's packages are used)
#   --out DIR      log, results.jsonl and summary.md (default gpu-check-out, or $OUT when set)
#   --device D     cuda (default) or cpu
#   --size S       real: StyleGAN2 FFHQ config-f 1024 px + CLIP ViT-B/32 (default);
#                  ci: 64 px and 256 px generators with a tiny CLIP (the CPU form)
#   --jobs N       build parallelism (default: all cores)
#   --quick        optimisation at batch 1 in bf16 and fp32 and at batch 8 in bf16, mapper and
#                  global in bf16 (for a few minutes of GPU time; the photo models are left out)
# On CUDA every optimisation run is repeated with --cuda-graph (C++), and a profile of the Python
# step at batch 1, bf16 (device time against wall time, the costliest operators) is written to
# OUT/profile-optimize-*.txt.
# Environment: PYTHON (default python3), GPU_CHECK_WORK (scratch, default /tmp/styleclip-gpu-check),
# GPU_CHECK_WAIT_FOR (a pid to wait for before the timed part).
# Every phase has its own time limit and the script goes on after a failed one, so one run
# brings back as much as it can; the exit code is non-zero when any phase failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# No spdlog/fmt: the core library does not use them, and Debian's fmt 9 headers would shadow the
# fmt that PyTorch 2.x ships inside its include folder.
DEB_PACKAGES="nlohmann-json3-dev libicu-dev libicu72 zlib1g-dev zlib1g libgtest-dev"

if [ "${1:-}" = fetch-deps ]; then
  dir=${2:-.gpu-deps}
  mkdir -p "$dir" && cd "$dir" || exit 1
  # shellcheck disable=SC2086
  apt-get download $DEB_PACKAGES || { echo "gpu_check: apt-get download failed" >&2; exit 1; }
  echo "gpu_check: $(ls ./*.deb | wc -l) packages in $dir ($(du -sh . | cut -f1))"
  exit 0
fi
if [ "${1:-}" != run ]; then
  sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
shift

deps=.gpu-deps out=${OUT:-gpu-check-out} device=cuda size=real jobs=$(nproc) quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --deps) deps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "gpu_check: unknown option '$1' (see scripts/gpu_check.sh)" >&2; exit 2 ;;
  esac
done
case $device in cuda | cpu) ;; *) echo "gpu_check: --device must be cuda or cpu" >&2; exit 2 ;; esac
case $size in real | ci) ;; *) echo "gpu_check: --size must be real or ci" >&2; exit 2 ;; esac

PY=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/log.txt
results=$out/results.jsonl
: >"$results"
: >"$log"
work=${GPU_CHECK_WORK:-/tmp/styleclip-gpu-check}
mkdir -p "$work"
failed=0
t_start=$(date +%s)

say() { echo "[$(($(date +%s) - t_start))s] $*" | tee -a "$log"; }
# phase NAME SECONDS CMD...: runs CMD with a time limit, its output into the log.
phase() {
  local name=$1 limit=$2
  shift 2
  say "== $name (limit ${limit}s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  say "== $name: rc $rc, $(($(date +%s) - t0))s"
  [ $rc -ne 0 ] && failed=1
  return $rc
}
# record KIND JSON: one result line, tagged.
record() { [ -n "$2" ] && echo "{\"bench\": \"$1\", \"result\": $2}" >>"$results"; }

say "gpu_check: device $device, size $size, out $out"
{
  echo "--- machine"
  date -u
  uname -a
  nproc
  free -g | head -2
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
  cmake --version | head -1
  c++ --version | head -1
} >>"$log" 2>&1

# --- dependencies: the fetched Debian packages, unpacked into a private prefix ------------------
prefix_path=""
if [ -d "$deps" ] && ls "$deps"/*.deb >/dev/null 2>&1; then
  pfx=$work/prefix
  rm -rf "$pfx" && mkdir -p "$pfx"
  for d in "$deps"/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$d" "$pfx" || failed=1
    else  # a .deb is an ar archive holding data.tar.xz
      (cd "$work" && rm -f data.tar.* && ar x "$d" && tar -xf data.tar.* -C "$pfx") || failed=1
    fi
  done
  # Absolute links inside the packages (libz.so → /lib/…) must point into the prefix.
  find "$pfx" -type l | while read -r l; do
    t=$(readlink "$l")
    case $t in /*) [ -e "$pfx$t" ] && ln -sfn "$pfx$t" "$l" ;; esac
  done
  prefix_path="$pfx/usr"
  # ICU's data library is a dependency of a dependency: RUNPATH does not reach it.
  export LD_LIBRARY_PATH="$pfx/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  icu_root="-DICU_ROOT=$pfx/usr"
  say "dependencies unpacked from $deps into $pfx"
else
  icu_root=""
  say "no .debs in '$deps': using the system's packages"
fi

# --- build: the core library, the benchmarks and the gpu tests (no OpenCV, no CLI) -------------
torch_prefix=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_dir=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
build=$work/build
targets="styleclip_core bench_optimize bench_mapper bench_global bench_photo styleclip_gpu_tests"
common=(-DCMAKE_BUILD_TYPE=Release -DSTYLECLIP_BUILD_CLI=OFF -DSTYLECLIP_WARNINGS_AS_ERRORS=OFF
  "-DSTYLECLIP_PYTHON=$(command -v "$PY")" "-DSTYLECLIP_FIXTURES_DIR=$work/no-fixtures")
[ -n "$icu_root" ] && common+=("$icu_root")
rm -rf "$build"
if ! phase "configure (find_package(Torch))" 300 cmake -S . -B "$build" "${common[@]}" \
  "-DCMAKE_PREFIX_PATH=${prefix_path:+$prefix_path;}$torch_prefix"; then
  # TorchConfig's CUDA detection can fail on a machine whose toolkit layout it does not expect;
  # the package's libraries are complete, so link them directly.
  rm -rf "$build"
  phase "configure (STYLECLIP_TORCH_DIR)" 300 cmake -S . -B "$build" "${common[@]}" "-DCMAKE_PREFIX_PATH=$prefix_path" \
    "-DSTYLECLIP_TORCH_DIR=$torch_dir" || { say "configure failed: see $log"; exit 1; }
fi
# shellcheck disable=SC2086
if ! phase build 900 cmake --build "$build" -j "$jobs" --target $targets; then
  # Without the CUDA allocator statistics (the one piece that uses c10_cuda headers) if that is
  # what broke; peak GPU memory then comes from the Python side only.
  cmake -S . -B "$build" -DSTYLECLIP_CUDA_STATS=OFF >>"$log" 2>&1
  # shellcheck disable=SC2086
  phase "build (no CUDA statistics)" 900 cmake --build "$build" -j "$jobs" --target $targets ||
    { say "build failed: see $log"; exit 1; }
fi

# --- bundles: random weights at the real sizes, made by the project's exporter -----------------
vocab=$work/vocab.txt.gz
phase vocabulary 120 $PY -c "
import sys; sys.path.insert(0, 'scripts')
import demo_world as w, demo_train_clip as t
t.write_merges('$vocab', t.learn_bpe(w.caption_corpus(5000, seed=1), 400))"
merges=$(zcat "$vocab" | tail -n +2 | wc -l)
small=$work/b64
phase "bundle b64" 300 sh -c "$PY scripts/export_bundle.py --random --resolution 64 --w-dim 64 --n-mlp 4 --channel-divisor 8 --out $small &&
  $PY scripts/export_bundle.py --random-clip tiny --vocab $vocab --vocab-merges $merges --out $small"
# The gpu tests first (seconds, on the small bundle): they say whether the rest is worth timing.
STYLECLIP_GPU_TEST_BUNDLE=$small phase "gpu tests" 180 "$build/tests/styleclip_gpu_tests"
if [ "$size" = real ]; then
  bundles="b1024"
  phase "bundle b1024 (FFHQ config-f + ViT-B/32)" 600 sh -c "$PY scripts/export_bundle.py --random --resolution 1024 --w-dim 512 --n-mlp 8 --channel-multiplier 2 --channel-divisor 1 --out $work/b1024 &&
    $PY scripts/export_bundle.py --random-clip vit-b32 --vocab $vocab --vocab-merges $merges --out $work/b1024"
else
  bundles="b64 b256"
  phase "bundle b256" 300 sh -c "$PY scripts/export_bundle.py --random --resolution 256 --w-dim 128 --n-mlp 4 --channel-divisor 4 --out $work/b256 &&
    $PY scripts/export_bundle.py --random-clip tiny --vocab $vocab --vocab-merges $merges --out $work/b256"
fi

# --- benchmarks: C++ then Python on the same bundle, each line tagged --------------------------
# GPU_CHECK_WAIT_FOR=PID: a process sharing the machine (say, a training run) that must end first,
# so that nothing else runs while the benchmarks are timed.
if [ -n "${GPU_CHECK_WAIT_FOR:-}" ]; then
  say "waiting for process $GPU_CHECK_WAIT_FOR to end before timing"
  while kill -0 "$GPU_CHECK_WAIT_FOR" 2>/dev/null; do sleep 1; done
fi
threads=$(($(nproc) < 8 ? $(nproc) : 8))
precisions="fp32 bf16"
[ "$device" = cpu ] && precisions="fp32"
for b in $bundles; do
  m=$work/$b
  [ -f "$m/manifest.json" ] || { say "no bundle $b: benchmarks skipped"; failed=1; continue; }
  # batch:precision pairs; --quick keeps batch 1 in both precisions and batch 8 in bf16
  runs=""
  for batch in 1 8; do for prec in $precisions; do runs="$runs $batch:$prec"; done; done
  [ $quick -eq 1 ] && runs="1:bf16 1:fp32 8:bf16" precisions=bf16
  [ $quick -eq 1 ] && [ "$device" = cpu ] && runs="1:fp32 8:fp32" precisions=fp32
  for run in $runs; do
    batch=${run%%:*} prec=${run##*:}
    tag="optimize $b batch $batch $prec"
    d=$work/dump-$b-$batch && mkdir -p "$d"
    steps=50
    [ "$device" = cpu ] && steps=10
    [ $quick -eq 1 ] && steps=30
    r=$(timeout 300 "$build/bench/bench_optimize" --models "$m" --batch $batch --steps $steps --warmup 5 \
      --threads $threads --device "$device" --precision $prec --json 2>>"$log") || failed=1
    record "$tag" "$r"
    timeout 120 "$build/bench/bench_optimize" --models "$m" --batch $batch --dump-text "$d/t.pt" \
      --dump-start "$d/w.pt" --device "$device" 2>>"$log" || failed=1
    r=$(timeout 300 $PY bench/optimize_reference.py --models "$m" --text-embedding "$d/t.pt" --start "$d/w.pt" \
      --steps $steps --warmup 5 --threads $threads --device "$device" --precision $prec --json 2>>"$log") || failed=1
    record "$tag" "$r"
    if [ "$device" = cuda ]; then
      # The same run with the step captured as a CUDA graph (C++ only; compared with the
      # Python run above), and once per bundle where a step's time goes (torch.profiler).
      # (A shorter limit: a capture that hangs must not eat the session's device time.)
      r=$(timeout 150 "$build/bench/bench_optimize" --models "$m" --batch $batch --steps $steps --warmup 5 \
        --threads $threads --device "$device" --precision $prec --cuda-graph --json 2>>"$log") || failed=1
      record "$tag +cuda graph" "$r"
      if [ "$batch" = 1 ] && [ "$prec" = bf16 ]; then
        timeout 300 $PY bench/optimize_reference.py --models "$m" --text-embedding "$d/t.pt" --start "$d/w.pt" \
          --steps 5 --warmup 3 --threads $threads --device "$device" --precision $prec \
          --profile "$out/profile-optimize-$b-batch1-bf16.txt" >/dev/null 2>>"$log" || failed=1
      fi
    fi
    say "$tag done"
  done
  for prec in $precisions; do
    tag="mapper $b $prec"
    d=$work/mdump-$b && mkdir -p "$d"
    ib=64
    [ "$device" = cpu ] && ib=8
    r=$(timeout 300 "$build/bench/bench_mapper" --models "$m" --dump "$d" --steps 20 --warmup 3 --batch 8 \
      --infer-batch $ib --threads $threads --device "$device" --precision $prec 2>>"$log") || failed=1
    record "$tag" "$r"
    r=$(timeout 300 $PY bench/mapper_reference.py --models "$m" --dump "$d" --steps 20 --warmup 3 --batch 8 \
      --infer-batch $ib --threads $threads --device "$device" --precision $prec 2>>"$log") || failed=1
    record "$tag" "$r"
    say "$tag done"
  done
  for prec in $precisions; do
    tag="global $b $prec"
    d=$work/gdump-$b && mkdir -p "$d"
    gb=128 ch=32 im=8
    [ "$device" = cpu ] && gb=16 ch=4 im=4
    r=$(timeout 300 "$build/bench/bench_global" --models "$m" --dump "$d" --channels $ch --images $im \
      --batch $gb --samples 2000 --threads $threads --device "$device" --precision $prec 2>>"$log") || failed=1
    record "$tag" "$r"
    layer=$(echo "$r" | $PY -c 'import json,sys; print(json.load(sys.stdin)["layer"])' 2>/dev/null || echo 0)
    r=$(timeout 300 $PY bench/global_reference.py --models "$m" --dump "$d" --channels $ch --layer "$layer" \
      --batch $gb --threads $threads --device "$device" --precision $prec 2>>"$log") || failed=1
    record "$tag" "$r"
    say "$tag done"
  done
  # Photos: the e4e encoder and LPIPS at their published sizes on the real bundle
  # (narrow ones on the CI-sized bundles); fp32, the Python side has no autocast. Not in --quick.
  if [ $quick -eq 0 ]; then
    photo_args="--random-encoder 8 --random-lpips 8"
    [ "$size" = real ] && photo_args="--random-encoder 1 --random-encoder-full --random-lpips 1"
    # shellcheck disable=SC2086
    if phase "photo models on $b" 300 $PY scripts/export_bundle.py $photo_args --out "$m"; then
      for batch in 1 8; do
        tag="photo $b batch $batch fp32"
        r=$(timeout 300 "$build/bench/bench_photo" --models "$m" --batch $batch --reps 5 --warmup 2 \
          --threads $threads --device "$device" --precision fp32 2>>"$log") || failed=1
        record "$tag" "$r"
        r=$(timeout 300 $PY bench/photo_reference.py --models "$m" --batch $batch --reps 5 --warmup 2 \
          --threads $threads --device "$device" 2>>"$log") || failed=1
        record "$tag" "$r"
        say "$tag done"
      done
    fi
  fi
done

$PY bench/summarize_gpu_check.py "$results" >"$out/summary.md" 2>>"$log" || failed=1
cat "$out/summary.md" | tee -a "$log"
say "gpu_check finished: $([ $failed -eq 0 ] && echo 'every phase passed' || echo 'SOME PHASES FAILED (see log)')"
exit $failed
