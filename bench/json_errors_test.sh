#!/usr/bin/env bash
# The benchmarks refuse a --json path they cannot write before running (exit 2, naming the path)
# and a number that is not one (nan, inf, out of range; exit 2 naming the option),
# and a bench_checkpoint --dir is never emptied: the bench works in a folder of its own.
#   json_errors_test.sh <bench_abft> <bench_train_step> <bench_fault_campaign> <bench_checkpoint>
set -uo pipefail
ABFT=$1 STEP=$2 CAMPAIGN=$3 CKPT=$4
WORK=$(mktemp -d /tmp/perigee_bench_json.XXXXXX)
trap 'chmod -R u+w "$WORK"; rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect() {  # expect <pattern> <command...>: exit 2 and the pattern on stderr, quickly
  local pattern=$1 out rc
  shift
  out=$(timeout 60 "$@" 2>&1 >/dev/null)
  rc=$?
  [[ $rc -eq 2 ]] && grep -q -- "$pattern" <<< "$out" || fail "$* -> exit $rc: $out"
  echo "ok: $(basename "$1"): $out"
}
expect "folder $WORK/none does not exist" "$ABFT" --iters 1 --n 16 --shapes proj --json "$WORK/none/x.json"
expect "$WORK is a folder" "$STEP" --models small --batches 1 --seq 16 --iters 1 --json "$WORK"
mkdir "$WORK/ro" && chmod a-w "$WORK/ro"
if [[ $(id -u) -ne 0 ]]; then  # root writes anywhere
  expect "folder $WORK/ro is not writable" "$CAMPAIGN" --flips 1 --json "$WORK/ro/x.json"
fi
expect "bench_fault_campaign: --bound: expected a finite number > 0, got 'nan'" "$CAMPAIGN" --bound nan
expect "bench_checkpoint: --scale: expected a number in \[1e-4, 4\], got 'nan'" "$CKPT" --scale nan
expect "bench_abft: --iters: expected an integer >= 1, got '0'" "$ABFT" --iters 0
expect "bench_train_step: --peak-tflops: expected a finite number >= 0, got 'inf'" "$STEP" --peak-tflops inf
touch "$WORK/keep.txt"
"$CKPT" --dir "$WORK" --scale 1e-4 --reps 1 --checkpoints 0 --json "$WORK/ckpt.json" > /dev/null \
  || fail "bench_checkpoint failed"
[[ -f $WORK/keep.txt ]] || fail "bench_checkpoint emptied its --dir"
python3 -c "import json, sys; json.load(open(sys.argv[1]))" "$WORK/ckpt.json" || fail "ckpt.json is not JSON"
[[ -z $(find "$WORK" -maxdepth 1 -name 'perigee-bench-checkpoint.*') ]] || fail "bench_checkpoint left its folder"
echo "ok: bench_checkpoint kept $WORK/keep.txt and removed its own folder"
