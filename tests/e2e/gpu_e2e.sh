#!/usr/bin/env bash
# End-to-end on a GPU: perigee-train (Trainer, not only GptModel) with device = "cuda", 2 ranks on
# the machine's GPU(s) under a real mpiexec, bf16 precision with bf16 activations and logits and the
# GELU epilogues. Checks what only the whole trainer runs on a device:
#   - precision = "bf16" alone turns on bf16 activations and logits and the GELU epilogues ("auto"),
#     with the losses of setting the three explicitly, bit for bit;
#   - gradient buckets (overlapped with the backward pass; a bucket size below one block's gradient,
#     so that several all-reduces start during the backward pass) give the losses of one all-reduce
#     after the backward pass, bit for bit (2 ranks: every sum has one order), also with gradient
#     accumulation (2 passes per step: the buckets may start only in the last one);
#   - the bf16 gradient wire trains (first loss identical, later ones within 2 %);
#   - a run cut after 3 steps and resumed from its checkpoint ends with the uninterrupted run's
#     losses, bit for bit;
#   - [fault] abft = true with bf16 precision ("auto": fp32 activations, no epilogues) reports no ABFT
#     event on clean GEMMs.
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

# The model, and a gradient-bucket size from its parameter count (GptModel's table: the embeddings; per
# block 2 LayerNorms, c_attn, attn c_proj, c_fc and mlp c_proj with their biases; ln_f; the byte
# vocabulary, 256, is its own padding). The backward pass marks the gradient final after ln_f, after
# each block (top first) and after the embeddings, and a bucket starts once bucket_mb of final gradient
# has not gone out; finish() sends the rest. Half a block's gradient per bucket gives 3 all-reduces per
# step here, 2 of them started during the backward pass (after each block); the former bucket_mb 1
# exceeded the whole 0.46 MiB gradient, so that no bucket started before finish(): one all-reduce after
# the backward pass, the very run it was compared with. The run log says whether buckets overlap, not
# how many started, so this arithmetic is what holds the runs to several buckets.
L=2 C=64 CTX=64 VP=256
BLOCK=$(( 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C) ))
PARAMS=$(( VP * C + CTX * C + L * BLOCK + 2 * C ))
BUCKET_MB=$(awk -v b="$BLOCK" 'BEGIN { printf "%.4f", b * 4 / 2 / 1048576 }')
awk -v mb="$BUCKET_MB" -v b="$BLOCK" 'BEGIN { e = int(mb * 1048576) / 4; exit !(e > 0 && e <= b) }' \
  || fail "bucket_mb $BUCKET_MB is no bucket smaller than one block's gradient ($BLOCK parameters)"
echo "gradient of $PARAMS parameters ($BLOCK per block): buckets of $BUCKET_MB MiB"

cat > "$WORK/gpu.toml" <<TOML
[model]
n_layer = $L
n_head = 2
n_embd = $C
context = $CTX

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
grep -q "device cuda:0 (" "$WORK/whole.log" || { cat "$WORK/whole.log"; fail "the run does not say it used CUDA"; }
[[ $(losses whole | wc -l) -eq 6 ]] || fail "expected 6 train records"
echo "ok: 6 steps on CUDA, losses $(losses whole | tr '\n' ' ')"
grep -q "GEMM operands bf16, logits bf16" "$WORK/whole.log" && grep -q "GELU in cuBLASLt epilogues" "$WORK/whole.log" \
  || { cat "$WORK/whole.log"; fail "precision = bf16 did not turn on bf16 storage and the GELU epilogues"; }
grep -q '"gelu_fusion": "on"' "$WORK/runs/whole/config.json" || fail "config.json lacks the resolved gelu_fusion"
train explicit --comm.bucket_mb=0 --device.activations=bf16 --device.logits=bf16 --device.gelu_fusion=true
[[ "$(losses explicit)" == "$(losses whole)" ]] || fail "explicit settings give other losses than auto"
echo "ok: precision = bf16 resolves to bf16 activations and logits and GELU epilogues, as set explicitly"

# Buckets only start during the backward pass when the communicator overlaps; otherwise the run is one
# all-reduce after it and the comparison below would compare a run with itself.
overlapping() {
  grep -q "all-reduce overlapped with the backward pass in buckets of" "$WORK/$1.log" \
    || { cat "$WORK/$1.log"; fail "$1: the log does not say the gradient buckets overlap the backward pass"; }
  # metrics.jsonl: every step's gradient went out in several all-reduces, at least one of them started
  # during the backward pass (2 expected here: after each block).
  python3 - "$WORK/runs/$1/metrics.jsonl" <<'PY' || fail "$1: no gradient bucket started during the backward pass"
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "train"]
print(sys.argv[1].split("/")[-2], "buckets per step", [int(r["buckets"]) for r in steps],
      "started during the backward", [int(r["buckets_overlapped"]) for r in steps])
sys.exit(0 if steps and all(r["buckets_overlapped"] >= 1 and r["buckets"] >= 2 for r in steps) else 1)
PY
}

train buckets --comm.bucket_mb="$BUCKET_MB"
overlapping buckets
[[ "$(losses buckets)" == "$(losses whole)" ]] || fail "bucketed losses $(losses buckets | tr '\n' ' ') differ"
echo "ok: gradient buckets give the same losses bit for bit"

# Gradient accumulation: 2 passes of 2 sequences per rank and step. The model calls the buckets back in
# the last pass only, when the gradient is final: a bucket sent from the first pass would average
# half a gradient, and the losses would part from the unbucketed accumulating run's after step 1.
train micro_whole --comm.bucket_mb=0 --train.micro_batch=2
train micro_buckets --comm.bucket_mb="$BUCKET_MB" --train.micro_batch=2
overlapping micro_buckets
[[ $(losses micro_buckets | wc -l) -eq 6 ]] || fail "micro_buckets: expected 6 train records"
[[ "$(losses micro_buckets)" == "$(losses micro_whole)" ]] \
  || fail "accumulated bucketed losses $(losses micro_buckets | tr '\n' ' ') differ from $(losses micro_whole | tr '\n' ' ')"
# The passes sum the same gradient in another order: close to the single-pass run, not equal.
paste <(losses micro_whole) <(losses whole) | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.02 * $2) bad = 1 }
  END { exit bad }' || fail "accumulated losses $(losses micro_whole | tr '\n' ' ') stray over 2 % from one pass"
echo "ok: gradient buckets with 2 accumulated passes give the same losses bit for bit"

train wire16 --comm.bucket_mb="$BUCKET_MB" --comm.grad_dtype=bf16
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

train abft --fault.abft=true --train.steps=3
grep -q "GEMM operands fp32, logits fp32" "$WORK/abft.log" || { cat "$WORK/abft.log"; fail "abft: not fp32 storage"; }
! grep -q "ABFT step" "$WORK/abft.log" || { grep "ABFT step" "$WORK/abft.log" | head; fail "ABFT events on clean GEMMs"; }
grep -Eq "ABFT: [1-9][0-9]* GEMM outputs checked, 0 detected" "$WORK/abft.log" \
  || { cat "$WORK/abft.log"; fail "abft: no GEMM output checked, or a detection on clean GEMMs"; }
echo "ok: ABFT over bf16 GEMMs, $(grep -Eo "[0-9]+ GEMM outputs checked" "$WORK/abft.log" | head -1), no event in 3 steps"
echo PASS
