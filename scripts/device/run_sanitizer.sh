#!/usr/bin/env bash
# On the GPU machine, inside run_on_device.sh's environment: compute-sanitizer over the CUDA kernel
# tests of the carried build. memcheck over every listed binary (API errors not reported: a test
# provokes an out-of-memory on purpose), racecheck and synccheck over the shared-memory kernels
# (attention, LayerNorm, cross-entropy, reductions). One log per run under $OUT/sanitizer, one
# summary line per run, exit 1 when any run reports an error or fails.
#   scripts/device/run_on_device.sh -- scripts/device/run_sanitizer.sh [binary...]
# Each run is capped at PER_RUN_S seconds (default 100: the sanitizer slows kernels 10-100x), and
# TOOLS picks the tools (default "memcheck racecheck synccheck"). One device call has 600 s: run
# TOOLS=memcheck in one call and TOOLS="racecheck synccheck" in another.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
LOGS="${OUT:-$ROOT/out}/sanitizer"
PER_RUN_S="${PER_RUN_S:-100}"
TOOLS="${TOOLS:-memcheck racecheck synccheck}"
mkdir -p "$LOGS"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2> /dev/null | head -1)
if [[ -z "$SAN" ]]; then
  echo "run_sanitizer.sh: no compute-sanitizer on this machine" >&2
  exit 2
fi
BINS=("$@")
if ((${#BINS[@]} == 0)); then
  BINS=(kernels_test_cuda_ops kernels_test_cuda_matmul kernels_test_cuda_act_bf16 kernels_test_cuda_gelu_fusion
        kernels_test_cuda_attention_bf16 kernels_test_cuda_convert)
fi
# Shared-memory kernels: the tests racecheck and synccheck look at (gtest filter per binary).
declare -A SHARED_FILTER=(
  [kernels_test_cuda_ops]='*Attention*:*LayerNorm*:*Layernorm*:*CrossEntropy*:*Crossentropy*:*Reduce*:*Sum*'
  [kernels_test_cuda_matmul]='*'
  [kernels_test_cuda_attention_bf16]='*'
  [kernels_test_cuda_act_bf16]='*'
)

STATUS=0
run() {  # run TOOL BINARY FILTER EXTRA...
  local tool=$1 bin=$2 filter=$3
  shift 3
  local path
  path=$(find "$BUILD" -type f -name "$bin" -perm -u+x | head -1)
  if [[ -z "$path" ]]; then
    echo "sanitizer $tool $bin: binary not found under $BUILD"
    STATUS=1
    return
  fi
  local log="$LOGS/${tool}_${bin}.log" t0=$SECONDS
  timeout "$PER_RUN_S" "$SAN" --tool "$tool" --error-exitcode 99 "$@" "$path" --gtest_filter="$filter" \
    > "$log" 2>&1
  local rc=$?
  local summary
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK SUMMARY" "$log" | tail -1)
  echo "sanitizer $tool $bin: exit $rc, $((SECONDS - t0)) s: ${summary:-no summary (see $log)}"
  ((rc != 0)) && STATUS=1
}

for tool in $TOOLS; do
  for bin in "${BINS[@]}"; do
    if [[ "$tool" == memcheck ]]; then
      run memcheck "$bin" '*' --report-api-errors no
    elif [[ -n "${SHARED_FILTER[$bin]:-}" ]]; then
      run "$tool" "$bin" "${SHARED_FILTER[$bin]}"
    fi
  done
done
echo "# sanitizer: status $STATUS; logs in $LOGS"
exit $STATUS
