#!/usr/bin/env bash
# End-to-end: the real binaries under a real mpiexec. perigee-data builds token files from a text
# corpus, perigee-train runs 2 ranks for a few steps and leaves config.json, metrics.jsonl and one
# log per rank; bad inputs (unknown key, missing data, batch not divisible by ranks, bad value)
# exit with status 2 and a message naming the cause.
#   train_e2e.sh <perigee-data> <perigee-train> <mpiexec>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 MPIEXEC=$3
WORK=$(mktemp -d /tmp/perigee_e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_mpi_flags "$MPIEXEC"

e2e_make_tokens "$DATA_BIN" "$WORK"

cat > "$WORK/tiny.toml" <<TOML
[model]
n_layer = 2
n_head = 2
n_embd = 32
context = 32

[train]
batch_size = 4
seq_len = 32
steps = 6
warmup_steps = 2
val_every = 3
val_batches = 1
sample_tokens = 16

[data]
train_file = "$WORK/tok_train.bin"
val_file = "$WORK/tok_val.bin"

[device]
device = "cpu"
threads = 1

[run]
dir = "$WORK/runs"
name = "e2e"
TOML

"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" > "$WORK/train.log" 2>&1 \
  || { cat "$WORK/train.log"; fail "2-rank training failed"; }
RUN="$WORK/runs/e2e"
[[ -f "$RUN/config.json" ]] || fail "config.json missing"
grep -q '"n_layer": 2' "$RUN/config.json" || fail "config.json lacks the resolved model"
[[ $(grep -c '"type":"train"' "$RUN/metrics.jsonl") -eq 6 ]] || fail "expected 6 train records in metrics.jsonl"
grep -q '"type":"val"' "$RUN/metrics.jsonl" || fail "no validation record"
[[ -f "$RUN/rank0.log" && -f "$RUN/rank1.log" ]] || fail "per-rank logs missing"
grep -q "step 6/6" "$WORK/train.log" || { cat "$WORK/train.log"; fail "step lines missing"; }
grep -q "sample" "$WORK/train.log" || fail "no text sample"

expect_error() {  # expect_error <description> <pattern> <args...>
  local what=$1 pattern=$2; shift 2
  "${MPI[@]}" -np 2 "$TRAIN_BIN" "$@" > "$WORK/err.log" 2>&1
  local rc=$?
  [[ $rc -eq 2 ]] || { cat "$WORK/err.log"; fail "$what: exit $rc, expected 2"; }
  grep -q -- "$pattern" "$WORK/err.log" || { cat "$WORK/err.log"; fail "$what: message lacks '$pattern'"; }
  echo "ok: $what -> $(grep -m1 -- "$pattern" "$WORK/err.log" | cut -c1-160)"
}
expect_error "unknown override key" "lrr" "$WORK/tiny.toml" --train.lrr=1
expect_error "bad value" "n_head" "$WORK/tiny.toml" --model.n_head=3
expect_error "missing data file" "perigee-data" "$WORK/tiny.toml" --data.train_file="$WORK/nope.bin"
expect_error "batch not divisible" "divisible by the world size" "$WORK/tiny.toml" --train.batch_size=3
expect_error "missing config file" "$WORK/none.toml" "$WORK/none.toml"
echo "PASS"
