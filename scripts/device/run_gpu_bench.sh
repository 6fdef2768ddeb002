#!/usr/bin/env bash
# GPU benchmarks of issue 4 in one command, most important first: nvidia-smi, the profiling test,
# bench_train_step (GPT-2 124M, B 16, T 1024, --profile) with everything bf16 (activations, logits,
# GELU epilogues, weight cache), the PyTorch anchor right after it (shared/anchors/torch_gpt2.py:
# eager bf16, eager fp32, compile bf16), then bf16 GEMMs alone, without the weight cache, each bf16
# option alone, bench_kernels, fp32, TF32, bf16 in 4 accumulated passes, by-shape; last
# bench/gpu/summarize.py, which writes $OUT/gpu_bench.json (Perigee / torch.compile tokens/s,
# breakdown, kernels) and prints the headline ratio as its last line. Steps that would start after
# BUDGET_S (480) seconds are skipped, and a step still running after STEP_TIMEOUT_S (240) is stopped.
# $OUT receives three files (the device tool brings back at most 8): run_gpu_bench.log,
# gpu_bench.json and gpu_bench_raw.tgz (every step's JSON, nvidia-smi);
# the steps write into RAW (a temporary folder) until then.
#
#   On the CPU machine (build and pack, about 10 MB):
#     scripts/device/run_gpu_bench.sh --prepare
#   On the GPU machine (the device `run` tool, carry ["build-gpu/carry"]):
#     scripts/device/run_gpu_bench.sh --require-gpu [--ncu] [--ncu-hot] [--skip-torch]
#   ONLY=regex runs only the steps whose names match (e.g. ONLY='ncu_hot' or ONLY='train_bf16_fused|torch');
#   the summary always runs.
#
# --prepare configures build-gpu (Release, sm_90), builds only bench_train_step, bench_kernels and
# kernels_test_profiling_backend, and copies them stripped, with the Debian runtime packages they
# need (OpenBLAS, gfortran, gomp: .deb files from device/debs or apt-get download) and the anchor,
# into build-gpu/carry/. On the GPU machine the packages are unpacked there with dpkg -x (never
# into /) and the CUDA libraries come from the machine's Python nvidia-* packages.
# Without a GPU the run prints why and exits 0 (--require-gpu: exit 2).
# --ncu adds `ncu --set basic` over the kernels of one training step (slow; optional).
# --ncu-hot profiles the hand-written kernels of one bf16 training step (attention, cross-entropy,
# LayerNorm, AdamW, GELU, residual: not the cuBLAS GEMMs) with the sections that say why a kernel is
# slow (speed of light, occupancy, launch, warp stall reasons, memory and compute workload), prints
# bench/gpu/ncu_summary.py's table of them into the log and keeps the CSV in the raw archive. ncu locks
# the clocks at base (--clock-control base): its times are for comparing kernels, not with the step's.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build-gpu}"
CARRY="$BUILD/carry"
OUT="${OUT:-$ROOT/out/gpu_bench}"
PREPARE=0 REQUIRE_GPU=0 NCU=0 NCU_HOT=0 SKIP_TORCH=0
for arg in "$@"; do
  case "$arg" in
    --prepare) PREPARE=1 ;;
    --require-gpu) REQUIRE_GPU=1 ;;
    --ncu) NCU=1 ;;
    --ncu-hot) NCU_HOT=1 ;;
    --skip-torch) SKIP_TORCH=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "run_gpu_bench.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
DEBS=(libopenblas0 libopenblas0-pthread libgfortran5 libgomp1)

find_anchor() {
  local c
  for c in "${ANCHOR:-}" "$ROOT/shared/anchors/torch_gpt2.py" "$ROOT/../shared/anchors/torch_gpt2.py" \
           "$CARRY/anchors/torch_gpt2.py"; do
    [[ -n "$c" && -f "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

# ---------------------------------------------------------------- CPU machine: build and pack
if (( PREPARE )); then
  set -e
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null
  cmake --build "$BUILD" --target bench_train_step bench_kernels kernels_test_profiling_backend -j2
  rm -rf "$CARRY"
  mkdir -p "$CARRY/bin" "$CARRY/debs" "$CARRY/anchors"
  cp "$BUILD/bench/bench_train_step" "$BUILD/bench/gpu/bench_kernels" \
     "$BUILD/tests/kernels/kernels_test_profiling_backend" "$CARRY/bin/"
  strip --strip-unneeded "$CARRY/bin/"*
  for p in "${DEBS[@]}"; do
    if ls "$ROOT/device/debs/${p}"_*.deb > /dev/null 2>&1; then
      cp "$ROOT/device/debs/${p}"_*.deb "$CARRY/debs/"
    else
      (cd "$CARRY/debs" && apt-get download "$p")
    fi
  done
  anchor=$(find_anchor) || { echo "run_gpu_bench.sh: no shared/anchors/torch_gpt2.py found" >&2; exit 1; }
  cp "$anchor" "$CARRY/anchors/"
  cp "$ROOT/bench/gpu/torch_anchor.py" "$ROOT/bench/gpu/summarize.py" "$ROOT/bench/gpu/ncu_summary.py" "$CARRY/"
  du -sh "$CARRY"
  echo "ready: carry [\"build-gpu/carry\"], run: scripts/device/run_gpu_bench.sh --require-gpu"
  exit 0
fi

# ---------------------------------------------------------------- GPU machine: run
mkdir -p "$OUT"
RAW="${RAW:-$(mktemp -d "${TMPDIR:-/tmp}/perigee_gpu_bench.XXXXXX")}"
mkdir -p "$RAW"
LOG="$OUT/run_gpu_bench.log"
exec > >(tee -a "$LOG") 2>&1
echo "# run_gpu_bench.sh $(date -u +%FT%TZ) on $(hostname); results in $OUT (raw files in $RAW)"

BIN="$CARRY/bin"
if [[ ! -x "$BIN/bench_train_step" ]]; then  # an unpacked build folder (this machine)
  BIN=""
  for b in bench_train_step gpu/bench_kernels; do [[ -x "$BUILD/bench/$b" ]] || BIN=missing; done
  if [[ "$BIN" == missing ]]; then
    echo "run_gpu_bench.sh: no binaries: run scripts/device/run_gpu_bench.sh --prepare on the CPU machine" >&2
    exit 2
  fi
fi
bin() {
  if [[ -x "$CARRY/bin/$1" ]]; then echo "$CARRY/bin/$1"
  elif [[ "$1" == bench_kernels ]]; then echo "$BUILD/bench/gpu/bench_kernels"
  elif [[ "$1" == kernels_test_profiling_backend ]]; then echo "$BUILD/tests/kernels/kernels_test_profiling_backend"
  else echo "$BUILD/bench/$1"; fi
}

# Runtime libraries: carried .deb files unpacked into carry/root; CUDA from Python nvidia-* packages.
if compgen -G "$CARRY/debs/*.deb" > /dev/null; then
  mkdir -p "$CARRY/root"
  for deb in "$CARRY"/debs/*.deb; do
    if command -v dpkg > /dev/null; then dpkg -x "$deb" "$CARRY/root"
    else (cd "$CARRY/root" && ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -xJ 2> /dev/null ||
          ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -x); fi
  done
  LIB="$CARRY/root/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$LIB:$LIB/openblas-pthread:${LD_LIBRARY_PATH:-}"
fi
NV_LIBS=$(python3 - 2> /dev/null <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in glob.glob(os.path.join(base, "nvidia", "*", "lib")) + glob.glob(os.path.join(base, "nvidia", "cu*", "lib")):
        dirs.add(lib)
print(":".join(sorted(dirs)))
PY
)
[[ -n "$NV_LIBS" ]] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$NV_LIBS"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"

if ! command -v nvidia-smi > /dev/null || ! nvidia-smi > "$RAW/nvidia-smi.txt" 2>&1; then
  echo "no NVIDIA GPU here (nvidia-smi missing or failing): GPU benchmarks skipped"
  "$(bin bench_kernels)" --json "$RAW/bench_kernels.json" || true  # shows the probe's reason; exits 0
  echo '{"skipped": "no NVIDIA GPU (nvidia-smi)"}' > "$OUT/gpu_bench.json"
  (( REQUIRE_GPU )) && { echo "run_gpu_bench.sh: --require-gpu and no GPU" >&2; exit 2; }
  exit 0
fi
cat "$RAW/nvidia-smi.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv \
  | tee "$RAW/gpu.csv"
echo "# LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

STATUS=0
# The device tool stops a command after 600 s: steps that would start after BUDGET_S seconds are
# skipped (and said so), so that the summary still runs. The steps go most important first.
BUDGET_S="${BUDGET_S:-480}"
# A step that hangs (a kernel never run on a GPU before, e.g. a kernel variant) is stopped after
# STEP_TIMEOUT_S seconds, so that the steps after it and the summary still run.
STEP_TIMEOUT_S="${STEP_TIMEOUT_S:-240}"
ONLY="${ONLY:-}"
step() {  # step NAME CMD...: run, log its exit status, keep going
  local name=$1; shift
  [[ -n "$ONLY" && "$name" != summarize && ! "$name" =~ $ONLY ]] && return 0
  if (( SECONDS > BUDGET_S )); then
    echo; echo "## $name: skipped, ${SECONDS} s gone of a ${BUDGET_S} s budget (BUDGET_S)"
    STATUS=1
    return 0
  fi
  echo; echo "## $name: $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$STEP_TIMEOUT_S" "$@"
  local rc=$?
  (( rc == 124 || rc == 137 )) && echo "## $name: stopped after ${STEP_TIMEOUT_S} s (STEP_TIMEOUT_S)"
  echo "## $name: exit $rc, $((SECONDS - t0)) s"
  (( rc != 0 )) && STATUS=1
  return 0
}

step profiling_test "$(bin kernels_test_profiling_backend)"
step train_bf16_fused "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --precision bf16 --activations bf16 --logits bf16 --gelu-fusion \
  --json "$RAW/train_step_bf16_fused.json"
# The anchor right after the configuration it is compared with (one run, side by side).
if (( ! SKIP_TORCH )); then
  if anchor=$(find_anchor); then
    ta="$ROOT/bench/gpu/torch_anchor.py"; [[ -f "$ta" ]] || ta="$CARRY/torch_anchor.py"
    # PyTorch with the machine's own libraries: run_on_device.sh saved LD_LIBRARY_PATH before it put
    # the carried Debian ones first (torch.compile also runs the machine's compiler through it).
    step torch_anchor env LD_LIBRARY_PATH="${PERIGEE_HOST_LD_LIBRARY_PATH-${LD_LIBRARY_PATH:-}}" \
      python3 "$ta" --anchor "$anchor" --json "$RAW/torch_anchor.json"
  else
    echo "no shared/anchors/torch_gpt2.py found (looked in ./shared, ../shared, $CARRY/anchors): torch skipped"
    STATUS=1
  fi
fi

# The kernel variants not yet measured (kernels/cuda/kernel_variants.hpp), on the fastest configuration.
step train_bf16_fused_variants "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 \
  --profile --profile-steps 3 --precision bf16 --activations bf16 --logits bf16 --gelu-fusion \
  --kernel-variant attention-in-place,attention-wide,crossentropy-staged --json "$RAW/train_step_bf16_fused_variants.json"
# The one-pass attention backward on top, in a step of its own: it spins on counters between blocks, and a
# broken ordering traps after 10 s (a CUDA error in this step alone), which must not cost the others' result.
step train_bf16_fused_one_pass "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 \
  --profile --profile-steps 3 --precision bf16 --activations bf16 --logits bf16 --gelu-fusion \
  --kernel-variant attention-in-place,attention-wide,crossentropy-staged,attention-one-pass \
  --json "$RAW/train_step_bf16_fused_one_pass.json"
step train_bf16 "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --precision bf16 --json "$RAW/train_step_bf16.json"
step train_bf16_fused_nocache "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 \
  --profile --profile-steps 3 --precision bf16 --activations bf16 --logits bf16 --gelu-fusion --no-weight-cache \
  --json "$RAW/train_step_bf16_fused_nocache.json"
step train_bf16_act "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --precision bf16 --activations bf16 --json "$RAW/train_step_bf16_act.json"
step train_bf16_act_gelu "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --precision bf16 --activations bf16 --gelu-fusion --json "$RAW/train_step_bf16_act_gelu.json"
step train_bf16_act_logits "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 \
  --profile --profile-steps 3 --precision bf16 --activations bf16 --logits bf16 \
  --json "$RAW/train_step_bf16_act_logits.json"
step bench_kernels "$(bin bench_kernels)" --json "$RAW/bench_kernels.json"
step train_fp32 "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --json "$RAW/train_step_fp32.json"
step train_tf32 "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 --profile \
  --profile-steps 3 --tf32 --json "$RAW/train_step_tf32.json"
step train_bf16_micro4 "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 2 --iters 10 \
  --precision bf16 --micro-batches 4 --json "$RAW/train_step_bf16_micro4.json"
step train_bf16_by_shape "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 1 --iters 3 --profile \
  --profile-steps 2 --profile-by-shape --precision bf16 --json "$RAW/train_step_bf16_by_shape.json"

if (( NCU )) && command -v ncu > /dev/null; then
  # The kernels of one training step (after a warm-up step), inside cudaProfilerStart/Stop.
  step ncu ncu --set basic --profile-from-start off --csv --page details --log-file "$RAW/ncu_step.csv" \
    "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 1 --iters 1 --precision bf16 --cuda-profiler-range \
    --json "$RAW/train_step_ncu.json"
fi

if (( NCU_HOT )); then
  if command -v ncu > /dev/null; then
    # One bf16 training step with every bf16 option (the headline configuration) after a warm-up step.
    step ncu_hot ncu --profile-from-start off --print-units base --csv --page raw \
      -k 'regex:(attention|crossentropy|layernorm|adamw|gelu|residual|encoder|sum_squares|sum_partials|bias_grad|add_bias|convert|scale|to_bf16|from_bf16)\w*_kernel' \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --log-file "$RAW/ncu_hot.csv" \
      "$(bin bench_train_step)" --device cuda --preset gpt2-124m --warmup 1 --iters 1 --precision bf16 \
      --activations bf16 --logits bf16 --gelu-fusion --cuda-profiler-range --json "$RAW/train_step_ncu_hot.json"
    ns="$ROOT/bench/gpu/ncu_summary.py"; [[ -f "$ns" ]] || ns="$CARRY/ncu_summary.py"
    [[ -f "$RAW/ncu_hot.csv" ]] && step ncu_hot_summary python3 "$ns" "$RAW/ncu_hot.csv" --json "$RAW/ncu_hot.json"
  else
    echo "--ncu-hot: no ncu on this machine"
    STATUS=1
  fi
fi

su="$ROOT/bench/gpu/summarize.py"; [[ -f "$su" ]] || su="$CARRY/summarize.py"
BUDGET_S=$((1 << 30)) step summarize python3 "$su" --perigee "$RAW/train_step_fp32.json" "$RAW/train_step_tf32.json" "$RAW/train_step_bf16.json" \
  "$RAW/train_step_bf16_act.json" "$RAW/train_step_bf16_act_gelu.json" "$RAW/train_step_bf16_act_logits.json" \
  "$RAW/train_step_bf16_fused.json" "$RAW/train_step_bf16_fused_variants.json" "$RAW/train_step_bf16_fused_one_pass.json" "$RAW/train_step_bf16_fused_nocache.json" --torch "$RAW/torch_anchor.json" --kernels "$RAW/bench_kernels.json" --out "$OUT/gpu_bench.json"
tar czf "$OUT/gpu_bench_raw.tgz" -C "$RAW" . || STATUS=1
echo "# done, status $STATUS; $OUT/gpu_bench.json, raw files in $OUT/gpu_bench_raw.tgz"
python3 - "$OUT/gpu_bench.json" <<'PY' || true  # the headline again, last, for a cut output tail
import json, sys
h = json.load(open(sys.argv[1])).get("headline")
print(f"# headline: {h['perigee']} / {h['torch']} tokens/s = {h['ratio']:.3f}" if h else "# headline: none")
PY
exit $STATUS
