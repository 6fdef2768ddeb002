#!/usr/bin/env bash
# On the GPU machine, inside run_on_device.sh's environment: compute-sanitizer over the CUDA kernel
# tests of the carried build. memcheck over every listed binary (API errors not reported: a test
# provokes an out-of-memory on purpose), racecheck and synccheck over the shared-memory kernels
# (attention, LayerNorm, cross-entropy, reductions). One summary line per run, exit 1 when any run
# reports an error or fails; the runs' logs go into one file, $OUT/sanitizer_<tools>.tgz (the device
# tool brings back at most 8 files).
#   scripts/device/run_on_device.sh -- scripts/device/run_sanitizer.sh [binary...]
# Each run is capped at PER_RUN_S seconds (default 100: the sanitizer slows kernels 10-100x) and at
# what is left of BUDGET_S (default 480: one device call has 600 s, unpacking included); a run that
# would get under 20 s is skipped and said so. TOOLS picks the tools (default "memcheck racecheck
# synccheck"): run TOOLS=memcheck in one call and TOOLS="racecheck synccheck" in another.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
DEST="${OUT:-$ROOT/out}"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/perigee_sanitizer.XXXXXX")"
PER_RUN_S="${PER_RUN_S:-100}"
BUDGET_S="${BUDGET_S:-480}"
TOOLS="${TOOLS:-memcheck racecheck synccheck}"
mkdir -p "$DEST"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2> /dev/null | head -1)
if [[ -z "$SAN" ]]; then
  echo "run_sanitizer.sh: no compute-sanitizer on this machine" >&2
  exit 2
fi
BINS=("$@")
if ((${#BINS[@]} == 0)); then
  BINS=(kernels_test_cuda_ops kernels_test_cuda_attention kernels_test_cuda_matmul kernels_test_cuda_act_bf16
        kernels_test_cuda_gelu_fusion kernels_test_cuda_attention_bf16 kernels_test_cuda_attention_one_pass
        kernels_test_cuda_convert)
fi
# Shared-memory kernels: the tests racecheck and synccheck look at (gtest filter per binary).
declare -A SHARED_FILTER=(
  [kernels_test_cuda_ops]='*LayerNorm*:*Layernorm*:*CrossEntropy*:*Crossentropy*:*Reduce*:*Sum*'
  [kernels_test_cuda_attention]='*'
  [kernels_test_cuda_matmul]='*'
  [kernels_test_cuda_attention_bf16]='*'
  [kernels_test_cuda_attention_one_pass]='*MatchesTheTwoPasses*'
  [kernels_test_cuda_act_bf16]='*'
)

# memcheck runs every test of a binary, except where that outlasts PER_RUN_S under the sanitizer (the
# one-pass attention's 65,536-head and GPT-2-shape tests).
declare -A MEMCHECK_FILTER=(
  [kernels_test_cuda_attention_one_pass]='*MatchesTheTwoPasses*'
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
  local left=$((BUDGET_S - SECONDS))
  if ((left < 20)); then
    echo "sanitizer $tool $bin: skipped, ${SECONDS} s gone of a ${BUDGET_S} s budget (BUDGET_S)"
    STATUS=1
    return
  fi
  local cap=$((left < PER_RUN_S ? left : PER_RUN_S))
  local log="$LOGS/${tool}_${bin}.log" t0=$SECONDS
  timeout "$cap" "$SAN" --tool "$tool" --error-exitcode 99 "$@" "$path" --gtest_filter="$filter" \
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
      run memcheck "$bin" "${MEMCHECK_FILTER[$bin]:-*}" --report-api-errors no
    elif [[ -n "${SHARED_FILTER[$bin]:-}" ]]; then
      run "$tool" "$bin" "${SHARED_FILTER[$bin]}"
    fi
  done
done
ARCHIVE="$DEST/sanitizer_${TOOLS// /_}.tgz"
tar czf "$ARCHIVE" -C "$LOGS" . || STATUS=1
echo "# sanitizer: status $STATUS; logs in $ARCHIVE"
exit $STATUS
