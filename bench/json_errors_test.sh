#!/usr/bin/env bash
# The benchmarks refuse bad input before running (exit 2, naming the option or path): a --json path
# they cannot write, a number that is not one (nan, inf, out of range), a model shape that is none,
# sizes that do not fit in memory. A bench_checkpoint --dir is never emptied (the bench works in a
# folder of its own), and a JSON file is replaced whole (no temporary file left).
#   json_errors_test.sh <bench_abft> <bench_train_step> <bench_fault_campaign> <bench_checkpoint>
#                       <bench_kernels> <bench_overlap> <mpiexec>
set -uo pipefail
ABFT=$1 STEP=$2 CAMPAIGN=$3 CKPT=$4 KERNELS=$5 OVERLAP=$6 MPIEXEC=$7
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
# access(2) lets root write anywhere, but no one can write /proc/version
expect "bench_abft: --json: folder /proc is not writable" "$ABFT" --iters 1 --n 16 --shapes proj --json /proc/version
expect "bench_kernels: --json: $WORK is a folder" "$KERNELS" --json "$WORK"
expect "bench_fault_campaign: --bound: expected a finite number > 0, got 'nan'" "$CAMPAIGN" --bound nan
expect "bench_abft: --threads: expected an integer in \[0, 4096\], got '65536'" "$ABFT" --threads 65536
expect "bench_kernels: --reps: expected an integer >= 1, got 'nan'" "$KERNELS" --reps nan
expect "bench_abft: --n 999999999 with shape attn (attn.c_attn) needs .* GB, more than the .* GB available here" \
  "$ABFT" --n 999999999 --json "$WORK/abft.json"
expect "bench_abft: --shapes: unknown shape 'bogus'" "$ABFT" --shapes proj,bogus --json "$WORK/abft.json"
expect "bench_fault_campaign: --points 99999999 with --warm 12 (200000013 saved model states) needs" \
  "$CAMPAIGN" --points 99999999
mpi1=("$MPIEXEC" --allow-run-as-root --oversubscribe -n 1 "$OVERLAP" --json "$WORK/overlap.json")
expect "bench_overlap: --channels 100 is not a multiple of --heads 3" "${mpi1[@]}" --channels 100 --heads 3
expect "bench_overlap: --vocab: expected an integer in \[1, 2147483520\]" "${mpi1[@]}" --vocab 2147483647
expect "bench_overlap: --algorithm ring needs --comm links" "${mpi1[@]}" --algorithm ring
expect "bench_overlap: --algorithm: unknown collective algorithm 'bogus'" "${mpi1[@]}" --comm links --algorithm bogus
[[ -z $(ls "$WORK") || $(ls "$WORK") == ro ]] || fail "a refused run left files: $(ls "$WORK")"
expect "bench_checkpoint: --scale: expected a number in \[1e-4, 4\], got 'nan'" "$CKPT" --scale nan
expect "bench_abft: --iters: expected an integer >= 1, got '0'" "$ABFT" --iters 0
expect "bench_train_step: --peak-tflops: expected a finite number >= 0, got 'inf'" "$STEP" --peak-tflops inf
touch "$WORK/keep.txt"
echo "old results" > "$WORK/ckpt.json"
ln -s ckpt.json "$WORK/link.json"  # a link's target is replaced, the link stays
"$CKPT" --dir "$WORK" --scale 1e-4 --reps 1 --checkpoints 0 --json "$WORK/link.json" > /dev/null \
  || fail "bench_checkpoint failed"
[[ -L $WORK/link.json ]] || fail "the --json link was replaced by a file"
[[ -z $(find "$WORK" -maxdepth 1 -name 'ckpt.json.*' -o -maxdepth 1 -name '.ckpt.json.*') ]] \
  || fail "a temporary JSON file was left: $(ls -a "$WORK")"
[[ -f $WORK/keep.txt ]] || fail "bench_checkpoint emptied its --dir"
python3 -c "import json, sys; json.load(open(sys.argv[1]))" "$WORK/ckpt.json" || fail "ckpt.json is not JSON"
[[ -z $(find "$WORK" -maxdepth 1 -name 'perigee-bench-checkpoint.*') ]] || fail "bench_checkpoint left its folder"
echo "ok: bench_checkpoint kept $WORK/keep.txt and removed its own folder"
