#!/usr/bin/env bash
# End-to-end on a GPU: perigee-train (Trainer, not only GptModel) with device = "cuda", 2 ranks on
# the machine's GPU(s) under a real mpiexec, bf16 precision with bf16 activations and logits and the
# GELU epilogues. Checks what only the whole trainer runs on a device:
#   - gradient buckets (bucket_mb 1, overlapped with the backward pass) give the losses of one
#     all-reduce after the backward pass, bit for bit (2 ranks: every sum has one order);
#   - the bf16 gradient wire trains (first loss identical, later ones within 2 %);
#   - a run cut after 3 steps and resumed from its checkpoint ends with the uninterrupted run's
#     losses, bit for bit;
#   - [fault] abft = true with bf16 precision (fp32 activations) reports no ABFT event on clean GEMMs.
# Ranks sharing one GPU fall back from NCCL to MPI with host staging ([comm] backend = "auto").
# Without a GPU (nvidia-smi missing or failing) it exits 77, which ctest reports as skipped.
#   gpu_e2e.sh <perigee-data> <perigee-train> <mpiexec>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 MPIEXEC=$3
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > /dev/null 2>&1; then
  echo "no NVIDIA GPU here (nvidia-smi missing or failing): skipped"
  exit 77
fi
WORK=$(mktemp -d /tmp/perigee_gpu_e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_mpi_flags "$MPIEXEC"
e2e_make_tokens "$DATA_BIN" "$WORK"

cat > "$WORK/gpu.toml" <<TOML
[model]
n_layer = 2
n_head = 2
n_embd = 64
context = 64

[train]
batch_size = 8
seq_len = 64
steps = 6
warmup_steps = 2
val_every = 0
sample_tokens = 0

[data]
train_file = "$WORK/tok_train.bin"
val_file = "$WORK/tok_val.bin"

[device]
device = "cuda"
precision = "bf16"
activations = "bf16"
logits = "bf16"
gelu_fusion = true

[comm]
backend = "auto"
timeout_s = 120

[checkpoint]
every_steps = 3
keep_last = 3

[run]
dir = "$WORK/runs"
progress = "off"
TOML

train() {  # train <name> <overrides...>: 2 ranks, log in $WORK/<name>.log
  local name=$1; shift
  "${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/gpu.toml" --run.name="$name" "$@" > "$WORK/$name.log" 2>&1 \
    || { cat "$WORK/$name.log"; fail "$name: training failed"; }
}
losses() { grep '"type":"train"' "$WORK/runs/$1/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }

train whole --comm.bucket_mb=0
grep -q -i "cuda" "$WORK/whole.log" || { cat "$WORK/whole.log"; fail "the run does not say it used CUDA"; }
[[ $(losses whole | wc -l) -eq 6 ]] || fail "expected 6 train records"
echo "ok: 6 steps on CUDA, losses $(losses whole | tr '\n' ' ')"

train buckets --comm.bucket_mb=1
[[ "$(losses buckets)" == "$(losses whole)" ]] || fail "bucketed losses $(losses buckets | tr '\n' ' ') differ"
echo "ok: gradient buckets give the same losses bit for bit"

train wire16 --comm.bucket_mb=1 --comm.grad_dtype=bf16
[[ "$(losses wire16 | head -1)" == "$(losses whole | head -1)" ]] || fail "bf16 wire: first loss differs"
paste <(losses wire16) <(losses whole) | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.02 * $2) bad = 1 }
  END { exit bad }' || fail "bf16 wire losses $(losses wire16 | tr '\n' ' ') stray over 2 %"
echo "ok: bf16 gradient wire, losses $(losses wire16 | tr '\n' ' ')"

train cut --comm.bucket_mb=0 --train.steps=3
train cut --comm.bucket_mb=0
grep -q "resumed from step 3" "$WORK/cut.log" || { cat "$WORK/cut.log"; fail "no resume from step 3"; }
[[ "$(losses cut | tail -3)" == "$(losses whole | tail -3)" ]] \
  || fail "resumed losses $(losses cut | tail -3 | tr '\n' ' ') differ from $(losses whole | tail -3 | tr '\n' ' ')"
echo "ok: resumed after step 3, steps 4-6 bit-identical"

train abft --device.activations=fp32 --device.logits=fp32 --device.gelu_fusion=false --fault.abft=true \
  --train.steps=3
! grep -q "ABFT step" "$WORK/abft.log" || { grep "ABFT step" "$WORK/abft.log" | head; fail "ABFT events on clean GEMMs"; }
echo "ok: ABFT over bf16 GEMMs, no event in 3 steps"
echo PASS
