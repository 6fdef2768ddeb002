#!/usr/bin/env bash
# End-to-end: the real binaries under a real mpiexec. perigee-data builds token files from a text
# corpus, perigee-train runs 2 ranks for a few steps and leaves config.json, metrics.jsonl and one
# log per rank; the same run with bf16 activation storage trains alike; bad inputs (unknown key, missing data, batch not divisible by ranks, bad value,
# ranks with different configs) exit with status 2 and a message naming the cause.
#   train_e2e.sh <perigee-data> <perigee-train> <mpiexec>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 MPIEXEC=$3
WORK=$(mktemp -d /tmp/perigee_e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_mpi_flags "$MPIEXEC"

e2e_make_tokens "$DATA_BIN" "$WORK"

e2e_small_toml "$WORK/tiny.toml" "$WORK" "batch_size = 4
steps = 6
warmup_steps = 2
val_every = 3
val_batches = 1
sample_tokens = 16"
cat >> "$WORK/tiny.toml" <<TOML

[run]
dir = "$WORK/runs"
name = "e2e"
TOML

"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" > "$WORK/train.log" 2>&1 \
  || { cat "$WORK/train.log"; fail "2-rank training failed"; }
RUN="$WORK/runs/e2e"
[[ -f "$RUN/config.json" ]] || fail "config.json missing"
grep -q '"n_layer": 2' "$RUN/config.json" || fail "config.json lacks the resolved model"
# precision fp32 (the default): "auto" storage is fp32, and config.json holds it resolved.
grep -q '"activations": "fp32"' "$RUN/config.json" && grep -q '"gelu_fusion": "off"' "$RUN/config.json" \
  || fail "config.json lacks the resolved [device] activations and gelu_fusion"
grep -q "GEMM operands fp32, logits fp32" "$WORK/train.log" || { cat "$WORK/train.log"; fail "no fp32 storage line"; }
[[ $(grep -c '"type":"train"' "$RUN/metrics.jsonl") -eq 6 ]] || fail "expected 6 train records in metrics.jsonl"
grep -q '"type":"val"' "$RUN/metrics.jsonl" || fail "no validation record"
[[ -f "$RUN/rank0.log" && -f "$RUN/rank1.log" ]] || fail "per-rank logs missing"
grep -q "step 6/6" "$WORK/train.log" || { cat "$WORK/train.log"; fail "step lines missing"; }
# The sample: its line, then the prompt and the 16 sampled bytes between two ---- lines.
grep -q "sample (16 bytes, temperature" "$WORK/train.log" || { cat "$WORK/train.log"; fail "no text sample"; }
SAMPLE_BYTES=$(awk '/^----$/ { inside = !inside; next } inside' "$WORK/train.log" | wc -c)
(( SAMPLE_BYTES >= 16 )) || { cat "$WORK/train.log"; fail "the sample holds $SAMPLE_BYTES bytes, not 16 or more"; }

# bf16 activation storage: the same job with the GEMM operands and the logits stored as bf16 trains
# too, says so in its log, and its first loss is the fp32 run's within 1 %.
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --device.activations=bf16 --device.logits=bf16 \
  --run.name=e2e_bf16 > "$WORK/train_bf16.log" 2>&1 || { cat "$WORK/train_bf16.log"; fail "bf16-activation training failed"; }
grep -q "GEMM operands bf16, logits bf16" "$WORK/train_bf16.log" \
  || { cat "$WORK/train_bf16.log"; fail "no bf16 activation and logits line"; }
first_loss() { grep -m1 '"type":"train"' "$1" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
L32=$(first_loss "$RUN/metrics.jsonl") L16=$(first_loss "$WORK/runs/e2e_bf16/metrics.jsonl")
awk -v a="$L32" -v b="$L16" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 0.01 * a) }' \
  || fail "first loss with bf16 activations $L16 is not within 1 % of fp32's $L32"
echo "ok: bf16 activations, first loss $L16 (fp32 $L32)"

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
expect_error "bf16 activations with abft" "cannot run with \\[fault\\] abft" "$WORK/tiny.toml" \
  --device.activations=bf16 --fault.abft=true
expect_error "bf16 logits with fp32 activations" "needs bf16 activations" "$WORK/tiny.toml" \
  --device.activations=fp32 --device.logits=bf16
# 1.3e13 parameters: refused at setup with the sizes, not OOM-killed while the pages fill.
expect_error "a model larger than the host's memory" "the job does not fit in host RAM" "$WORK/tiny.toml" \
  --model.n_layer=4096 --model.n_embd=16384

# Each rank reads its own config (a file per node image): ranks that would run different jobs stop
# before training, rank 0 naming the keys and the ranks; node-local keys (threads, token file paths
# with the same tokens) may differ.
"${MPI[@]}" -np 1 "$TRAIN_BIN" "$WORK/tiny.toml" : -np 1 "$TRAIN_BIN" "$WORK/tiny.toml" --train.lr=0.002 \
  --model.n_layer=3 > "$WORK/err.log" 2>&1
rc=$?
[[ $rc -eq 2 ]] || { cat "$WORK/err.log"; fail "ranks with different configs: exit $rc, expected 2"; }
grep -q "train.lr: 0.001 on rank 0; 0.002 on rank 1" "$WORK/err.log" && grep -q "model.n_layer: 2 on rank 0; 3 on rank 1" \
  "$WORK/err.log" || { cat "$WORK/err.log"; fail "the rank agreement message lacks the differing keys"; }
echo "ok: ranks with different configs -> $(grep -m1 "train.lr:" "$WORK/err.log")"
"${MPI[@]}" -np 1 "$TRAIN_BIN" "$WORK/tiny.toml" : -np 1 "$TRAIN_BIN" "$WORK/tiny.toml" \
  --data.train_file="$WORK/not_on_this_node.bin" > "$WORK/err.log" 2>&1
rc=$?
[[ $rc -eq 2 ]] || { cat "$WORK/err.log"; fail "a rank without its token file: exit $rc, expected 2"; }
grep -q "job.train_data: .* on rank 0; missing: $WORK/not_on_this_node.bin on rank 1" "$WORK/err.log" \
  || { cat "$WORK/err.log"; fail "the rank agreement message does not name rank 1's missing file"; }
echo "ok: a rank without its token file -> $(grep -m1 "job.train_data:" "$WORK/err.log" | cut -c1-160)"
cp "$WORK/tok_val.bin" "$WORK/tok_val_copy.bin"
cp "$WORK/tiny.toml" "$WORK/tiny_node1.toml"
"${MPI[@]}" -np 1 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_local : -np 1 "$TRAIN_BIN" "$WORK/tiny_node1.toml" \
  --run.name=e2e_local --device.threads=2 --data.val_file="$WORK/tok_val_copy.bin" > "$WORK/local.log" 2>&1 \
  || { cat "$WORK/local.log"; fail "ranks differing only in node-local keys did not train"; }
echo "ok: node-local keys may differ between ranks"

# A relaunch of a finished run resumes at its last step: nothing to train, one validation (not two),
# no "trained steps 7..6" summary, exit 0; with fewer [train] steps than the checkpoint it says so.
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_done --checkpoint.every_steps=3 > "$WORK/done.log" 2>&1 \
  || { cat "$WORK/done.log"; fail "the run to relaunch failed"; }
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_done --checkpoint.every_steps=3 > "$WORK/again.log" 2>&1 \
  || { cat "$WORK/again.log"; fail "relaunching a finished run failed"; }
grep -q "at the last step, 6: nothing to train" "$WORK/again.log" || { cat "$WORK/again.log"; fail "no 'nothing to train' line"; }
[[ $(grep -c "validation at step 6" "$WORK/again.log") -eq 1 ]] || { cat "$WORK/again.log"; fail "the relaunch did not validate exactly once"; }
grep -q "trained steps" "$WORK/again.log" && { cat "$WORK/again.log"; fail "a training summary for no steps"; }
grep -q "resuming on other data" "$WORK/again.log" && { cat "$WORK/again.log"; fail "the same token file taken for other data"; }
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_done --checkpoint.every_steps=3 --train.steps=4 \
  --train.seed=99 > "$WORK/fewer.log" 2>&1 || { cat "$WORK/fewer.log"; fail "relaunching with fewer steps failed"; }
grep -q "at step 6, past \[train\] steps = 4: nothing to train" "$WORK/fewer.log" \
  || { cat "$WORK/fewer.log"; fail "no warning for a checkpoint past [train] steps"; }
grep -q "resuming with other data settings than the run that wrote the checkpoint (train.seed: [0-9]* -> 99)" \
  "$WORK/fewer.log" || { cat "$WORK/fewer.log"; fail "no warning for a resume with another seed"; }
grep -q "resuming with changed settings: train.steps: 6 -> 4" "$WORK/fewer.log" \
  || { cat "$WORK/fewer.log"; fail "no line for a resume with other [train] steps"; }
echo "ok: a finished run relaunched trains nothing and says so"

# Other tokens at the same path (the config is unchanged): the checkpoint records the token file's
# count and CRC, and the resume warns with both.
mkdir -p "$WORK/other"
e2e_make_tokens "$DATA_BIN" "$WORK/other" "lost its sun sensor and rebooted twice before dawn."
cp "$WORK/tok_train.bin" "$WORK/moving.bin"
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_moving --checkpoint.every_steps=3 --train.steps=3 \
  --data.train_file="$WORK/moving.bin" > "$WORK/moving.log" 2>&1 || { cat "$WORK/moving.log"; fail "the run on moving.bin failed"; }
cp "$WORK/other/tok_train.bin" "$WORK/moving.bin"
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_moving --checkpoint.every_steps=3 \
  --data.train_file="$WORK/moving.bin" > "$WORK/moved.log" 2>&1 || { cat "$WORK/moved.log"; fail "the resume on other tokens failed"; }
grep -q "resuming on other data: $WORK/moving.bin holds other tokens than the file the checkpoint was trained on (then [0-9]* tokens, vocabulary 256, crc32 [0-9a-f]*; now [0-9]* tokens" \
  "$WORK/moved.log" || { cat "$WORK/moved.log"; fail "no warning for other tokens at the same path"; }
echo "ok: other tokens at the same path -> $(grep -m1 -o "resuming on other data.*" "$WORK/moved.log" | cut -c1-150)"

# Rank 0's storage takes 3 s more per checkpoint (fault plan) and the others wait for a synchronous
# write under [checkpoint] timeout_s = 1: the job ends at once, rank 1 naming that deadline.
echo "checkpoint_delay 3" > "$WORK/slow.txt"
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=e2e_slow --fault.plan="$WORK/slow.txt" \
  --checkpoint.every_steps=2 --checkpoint.async=false --checkpoint.timeout_s=1 > "$WORK/slow.log" 2>&1
rc=$?
[[ $rc -ne 0 ]] || { cat "$WORK/slow.log"; fail "a checkpoint write past [checkpoint] timeout_s did not fail the job"; }
grep -a "training failed: " "$WORK/slow.log" \
  | grep -q "waiting for rank 0's checkpoint work (\[checkpoint\] timeout_s = 1 s)" \
  || { cat "$WORK/slow.log"; fail "no message naming [checkpoint] timeout_s"; }
echo "ok: a checkpoint write past [checkpoint] timeout_s -> exit $rc"
echo "PASS"
