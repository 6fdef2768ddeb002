#!/usr/bin/env bash
# Power-cut torture test: real binaries, real mpirun, real `kill -9`. A tiny model trains 2 ranks
# once without interruption (the reference), then again under perigee-run while a loop cuts the
# power at random moments: one random rank, rank 0 (the checkpoint writer) or every process at once
# (mpirun and all ranks), several of the cuts timed to land while a checkpoint file is being written
# (right after a ckpt-*.h5.tmp appears), one killing only mpirun (its ranks are orphaned and the
# supervisor must clean them up). At the end the final checkpoints of both runs must hold
# bit-identical parameters and AdamW moments (perigee-ckpt diff), every checkpoint on disk must
# verify (perigee-ckpt verify), and no process of the job may be left. Then a resume on another
# world size (1 rank) re-shards the data cursor and finishes, and perigee-ckpt must fail on a
# corrupted checkpoint and on different ones.
#   torture.sh <perigee-data> <perigee-train> <perigee-run> <perigee-ckpt> <mpiexec>
# PERIGEE_TORTURE_SEED=<n> replays a run's cut schedule (the seed is printed).
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 RUN_BIN=$3 CKPT_BIN=$4 MPIEXEC=$5
WORK=$(mktemp -d /tmp/perigee_torture.XXXXXX)
SUP_PID=""
declare -a SEEN_PIDS=()
cleanup() {
  # Only processes this test started: the supervisor and the job processes it saw.
  [[ -n $SUP_PID ]] && kill -9 "$SUP_PID" 2>/dev/null
  for p in "${SEEN_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [[ -f $WORK/sup.log ]] && { echo "--- supervisor log (perigee-run lines)"; grep -a "perigee-run\|resumed\|error" "$WORK/sup.log" | tail -60; }
  exit 1
}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_mpi_flags "$MPIEXEC"
SEED=${PERIGEE_TORTURE_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
echo "seed $SEED (PERIGEE_TORTURE_SEED=$SEED replays the cut schedule)"
T_START=$(date +%s.%N)
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD"; }  # sleep without a fork, for tight polling
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

e2e_make_tokens "$DATA_BIN" "$WORK"

STEPS=300
e2e_small_toml "$WORK/tiny.toml" "$WORK" "batch_size = 4
steps = $STEPS
warmup_steps = 10
val_every = 0
val_batches = 0
log_every = 50
sample_tokens = 0"
cat >> "$WORK/tiny.toml" <<TOML

[checkpoint]
every_steps = 3
keep_last = 3

[run]
dir = "$WORK/runs"
progress = "off"
TOML

# Reference: one uninterrupted run.
t0=$(now)
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/tiny.toml" --run.name=ref > "$WORK/ref.log" 2>&1 \
  || { cat "$WORK/ref.log"; fail "reference run failed"; }
REF_CKPT=$(printf "%s/runs/ref/checkpoints/ckpt-%08d.h5" "$WORK" "$STEPS")
[[ -f $REF_CKPT ]] || fail "reference final checkpoint $REF_CKPT missing"
echo "reference run: $STEPS steps in $(elapsed "$t0") s"

# The supervised run, cut again and again.
CK="$WORK/runs/cut/checkpoints"
METRICS="$WORK/runs/cut/metrics.jsonl"
"$RUN_BIN" --np 2 --max-restarts 20 --backoff 0.2 --backoff-max 1 --stall-timeout 60 --mpirun "$MPIEXEC" \
  "$WORK/tiny.toml" --run.name=cut > "$WORK/sup.log" 2>&1 &
SUP_PID=$!
T_SUP=$(now)
MPIRUN_NAME=$(basename "$MPIEXEC" | cut -c1-15)
launches() { grep -ac "\] launch [0-9]* of at most" "$WORK/sup.log"; }
train_lines() {
  local n=0
  [[ -f $METRICS ]] && n=$(grep -ac '"type":"train"' "$METRICS")
  echo "${n:-0}"
}
sup_alive() { kill -0 "$SUP_PID" 2>/dev/null; }
job_pids() {  # mpirun (child of the supervisor) and its ranks
  local mp
  mp=$(pgrep -P "$SUP_PID" -x "$MPIRUN_NAME" 2>/dev/null | head -1) || true
  MPIRUN_PID=$mp
  RANK_PIDS=()
  [[ -n $mp ]] && mapfile -t RANK_PIDS < <(pgrep -P "$mp" 2>/dev/null)
  [[ -n $mp ]] && SEEN_PIDS+=("$mp" "${RANK_PIDS[@]}")
}
# Waits until launch $1 runs with 2 ranks and has logged a training step; 1 when the job ended.
wait_training() {
  local want=$1 base deadline
  deadline=$(( $(date +%s) + 60 ))
  while (( $(launches) < want )); do
    sup_alive || return 1
    (( $(date +%s) < deadline )) || fail "launch $want did not start within 60 s"
    nap 0.02
  done
  base=$(train_lines)
  while true; do
    sup_alive || return 1
    (( $(date +%s) < deadline )) || fail "launch $want made no training step within 60 s"
    job_pids
    if (( ${#RANK_PIDS[@]} == 2 )) && (( $(train_lines) > base )); then return 0; fi
    nap 0.01
  done
}

last_step() {  # the step of the newest train record
  local l
  l=$(tail -c 4000 "$METRICS" 2>/dev/null | grep -ao '"type":"train","step":[0-9]*' | tail -1)
  echo "${l##*:}"
}
# Cut k (0-based) lands at a random step in the (k+1)-th of NCUT + 2 equal slices of the run, so
# every cut lands before the end however fast the machine is.
MODES=(rank writer-mid-write all all-mid-write mpirun-only writer-mid-write rank all-mid-write)
NCUT=${#MODES[@]}
SLICE=$(( STEPS / (NCUT + 2) ))
CUTS=0 MID_WRITE=0
for mode in "${MODES[@]}"; do
  target=$(( (CUTS + 1) * SLICE + RANDOM % SLICE ))
  wait_training $((CUTS + 1)) || break
  while (( $(last_step) < target )); do
    sup_alive || break 2
    nap 0.02
  done
  job_pids
  [[ -n $MPIRUN_PID && ${#RANK_PIDS[@]} -eq 2 ]] || { sup_alive || break; fail "job processes not found for a cut"; }
  case $mode in
    rank) victims=("${RANK_PIDS[RANDOM % 2]}") ;;
    writer-mid-write)  # rank 0 writes the checkpoints: find it by its MPI rank, not by spawn order
      victims=()
      for p in "${RANK_PIDS[@]}"; do
        tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=0" && victims=("$p")
      done
      (( ${#victims[@]} == 1 )) || fail "rank 0 not found among ${RANK_PIDS[*]}" ;;
    all|all-mid-write) victims=("$MPIRUN_PID" "${RANK_PIDS[@]}") ;;
    mpirun-only) victims=("$MPIRUN_PID") ;;
  esac
  if [[ $mode == *mid-write ]]; then
    # Kill the moment a checkpoint file is being written (rank 0's writer thread made a .tmp):
    # the victims are known already, so only a builtin test and the kill stand in between.
    deadline=$(( $(date +%s) + 20 ))
    until compgen -G "$CK/*.h5.tmp" > /dev/null; do
      sup_alive || break 2
      (( $(date +%s) < deadline )) || fail "no checkpoint write seen within 20 s"
      nap 0.001
    done
  fi
  kill -9 "${victims[@]}" 2>/dev/null
  CUTS=$((CUTS + 1))
  # SIGKILL lands asynchronously: look for a half-written file once the victims are dead.
  for p in "${victims[@]}"; do
    for _ in $(seq 1 200); do
      state=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) || break
      [[ -z $state || $state == Z ]] && break
      nap 0.01
    done
  done
  tmp_left="no"
  if [[ $mode == writer-mid-write || $mode == all* ]] && compgen -G "$CK/*.h5.tmp" > /dev/null; then
    tmp_left="yes"
    MID_WRITE=$((MID_WRITE + 1))
  fi
  echo "cut $CUTS ($mode): kill -9 ${victims[*]} at step $(grep -a '"type":"train"' "$METRICS" | tail -1 | sed 's/.*"step":\([0-9]*\).*/\1/'), checkpoint write cut: $tmp_left"
done

wait "$SUP_PID"
SUP_RC=$?
SUP_PID=""
echo "supervised run: $CUTS cuts, $(launches) launches, $(elapsed "$T_SUP") s, exit $SUP_RC"
grep -a "\] launch [0-9]* failed" "$WORK/sup.log" | sed 's/^\[perigee-run [0-9:.]*\] /  /' 
[[ $SUP_RC -eq 0 ]] || fail "perigee-run exited $SUP_RC"
(( CUTS >= 5 )) || fail "only $CUTS cuts landed before the run finished (need >= 5)"
(( $(launches) == CUTS + 1 )) || fail "expected $((CUTS + 1)) launches for $CUTS cuts, saw $(launches)"
(( MID_WRITE >= 1 )) || fail "no cut landed during a checkpoint write"
echo "$MID_WRITE cut(s) left a half-written checkpoint behind"
(( $(grep -ac "resumed from step" "$WORK/sup.log") >= 1 )) || fail "no launch resumed from a checkpoint"

# No process of any launch is left.
for p in "${SEEN_PIDS[@]}"; do
  if kill -0 "$p" 2>/dev/null && [[ $(ps -o stat= -p "$p" 2>/dev/null) != Z* ]]; then
    fail "process $p of a killed launch is still alive"
  fi
done

CUT_CKPT=$(printf "%s/ckpt-%08d.h5" "$CK" "$STEPS")
[[ -f $CUT_CKPT ]] || fail "final checkpoint $CUT_CKPT of the supervised run missing"
"$CKPT_BIN" verify "$CK" > "$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log"; fail "a checkpoint fails verification"; }
cat "$WORK/verify.log"
"$CKPT_BIN" diff "$REF_CKPT" "$CUT_CKPT" --buffer params --buffer adam_m --buffer adam_v > "$WORK/diff.log" 2>&1 \
  || { cat "$WORK/diff.log"; fail "parameters after the cuts differ from the uninterrupted run"; }
cat "$WORK/diff.log"
grep -q "IDENTICAL" "$WORK/diff.log" || fail "diff did not report IDENTICAL"

# The tools fail when they must: a flipped byte, and two different checkpoints.
BAD="$WORK/bad"
mkdir -p "$BAD"
cp "$CUT_CKPT" "$BAD/"
SIZE=$(stat -c %s "$CUT_CKPT")
printf '\xff\xfe' | dd of="$BAD/$(basename "$CUT_CKPT")" bs=1 seek=$((SIZE * 3 / 4)) conv=notrunc status=none
"$CKPT_BIN" verify "$BAD" > "$WORK/bad.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] || { cat "$WORK/bad.log"; fail "verify of a corrupted checkpoint exited $rc, expected 1"; }
grep -q "^FAIL  $(basename "$CUT_CKPT"): " "$WORK/bad.log" || { cat "$WORK/bad.log"; fail "verify did not name the corrupted checkpoint"; }
cat "$WORK/bad.log"
"$CKPT_BIN" diff "$REF_CKPT" "$(printf "%s/ckpt-%08d.h5" "$CK" $((STEPS - 3)))" --buffer params > "$WORK/diff2.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] || { cat "$WORK/diff2.log"; fail "diff of different checkpoints exited $rc, expected 1"; }
grep -q "max abs diff" "$WORK/diff2.log" || fail "diff did not print the max abs diff"

# A resume on another world size: 1 rank continues the 2-rank run for 12 more steps.
"$RUN_BIN" --np 1 --max-restarts 0 --mpirun "$MPIEXEC" "$WORK/tiny.toml" --run.name=cut \
  --train.steps=$((STEPS + 12)) > "$WORK/reshard.log" 2>&1 || { cat "$WORK/reshard.log"; fail "1-rank resume failed"; }
grep -q "written by 2 rank(s), this launch has 1" "$WORK/reshard.log" || { cat "$WORK/reshard.log"; fail "supervisor did not note the world-size change"; }
grep -q "re-sharded to 1" "$WORK/reshard.log" || { cat "$WORK/reshard.log"; fail "trainer did not re-shard"; }
"$CKPT_BIN" info "$(printf "%s/ckpt-%08d.h5" "$CK" $((STEPS + 12)))" > "$WORK/info.log" 2>&1 || { cat "$WORK/info.log"; fail "info failed"; }
grep -q "world size  1" "$WORK/info.log" || { cat "$WORK/info.log"; fail "1-rank checkpoint missing"; }
# The fault ladder's window travels with the checkpoint (format version 2).
grep -q "format version 2" "$WORK/info.log" || { cat "$WORK/info.log"; fail "not a format version 2 file"; }
grep -q "^series      invariant_grad_norms (" "$WORK/info.log" || { cat "$WORK/info.log"; fail "no invariant window in the checkpoint"; }

# Planned deaths in successive launches (fault plan `launch=`; perigee-run exports PERIGEE_LAUNCH):
# rank 1 dies after step 100 in launch 1, rank 0 after step 200 in launch 2, launch 3 finishes, and
# the final state is the reference's bit for bit.
printf 'death rank=1 step=100\ndeath rank=0 step=200 launch=2\n' > "$WORK/deaths.txt"
"$RUN_BIN" --np 2 --max-restarts 3 --backoff 0.2 --mpirun "$MPIEXEC" "$WORK/tiny.toml" --run.name=deaths \
  --fault.plan="$WORK/deaths.txt" > "$WORK/deaths.log" 2>&1 || { cat "$WORK/deaths.log"; fail "the run with planned deaths failed"; }
grep -aq "rank 1 dies (SIGKILL) after step 100 in launch 1" "$WORK/deaths.log" \
  && grep -aq "rank 0 dies (SIGKILL) after step 200 in launch 2" "$WORK/deaths.log" \
  && grep -aq "job completed: launch 3 ended with exit status 0" "$WORK/deaths.log" \
  || { cat "$WORK/deaths.log"; fail "the planned deaths did not happen in launches 1 and 2, then a clean launch 3"; }
"$CKPT_BIN" diff "$REF_CKPT" "$(printf "%s/runs/deaths/checkpoints/ckpt-%08d.h5" "$WORK" "$STEPS")" > "$WORK/diff3.log" 2>&1 \
  || { cat "$WORK/diff3.log"; fail "the run with planned deaths does not end bit-identical to the reference"; }
echo "ok: planned deaths in launches 1 and 2, launch 3 finished bit-identical to the reference"

echo "PASS in $(elapsed "$T_START") s"
