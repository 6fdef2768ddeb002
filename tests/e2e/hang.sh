#!/usr/bin/env bash
# Hang test: no process may leave the job blocked. First the supervisor's policy against a fake mpirun
# (a script that fails on purpose): a config error is not retried, a setup error caused by a
# collective timeout is; restarts are bounded with a doubling back-off; SIGTERM is forwarded;
# processes left by a launch are killed before the next one; a silent job is killed by the stall
# watchdog. Then the real thing: one job runs 2 ranks under perigee-run with
# [comm] timeout_s = 5 and --stall-timeout 10, and three faults hit it one after the other:
#   1. rank 1 stops responding (SIGSTOP) mid-run: rank 0's collective times out, it aborts the job;
#   2. rank 0 stops (rank 1 is then inside an allreduce, waiting), and is killed (-9) a second later:
#      mpirun sees the death and ends the job;
#   3. every rank stops at once: no collective can time out, the supervisor's stall watchdog kills
#      the job;
#   4. mpirun stops: the ranks finish training and then wait forever in MPI_Finalize; the stall
#      watchdog again.
# Last, an eclipse pause and a slow checkpoint load, longer than the stall timeout, must not count as
# stalls.
# Each time the supervisor must relaunch within BOUND seconds of the fault (measured from the
# signal to the supervisor's "launch N" line), the stopped processes must be gone, and in the end
# the run completes from its checkpoints, every checkpoint verifies, and no process is left.
#   hang.sh <perigee-data> <perigee-train> <perigee-run> <perigee-ckpt> <mpiexec>
set -uo pipefail
DATA_BIN=$1 RUN_BIN=$3 CKPT_BIN=$4 MPIEXEC=$5
TRAIN_BIN=$2
BOUND=30
WORK=$(mktemp -d /tmp/perigee_hang.XXXXXX)
SUP_PID=""
declare -a SEEN_PIDS=()
cleanup() {
  # Only processes this test started; stopped ones get SIGCONT too (harmless after SIGKILL).
  [[ -n $SUP_PID ]] && kill -9 "$SUP_PID" 2>/dev/null
  for p in "${SEEN_PIDS[@]}"; do
    kill -9 "$p" 2>/dev/null
    kill -CONT "$p" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [[ -f $WORK/sup.log ]] && { echo "--- supervisor log"; grep -a "perigee-run\|resumed\|error\|did not complete" "$WORK/sup.log" | tail -40; }
  exit 1
}
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD"; }
now() { date +%s.%N; }
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
T_START=$(now)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_make_tokens "$DATA_BIN" "$WORK" "lost its laser link to the next plane and waited for it to come back."
[[ -x $TRAIN_BIN ]] || fail "perigee-train not found at $TRAIN_BIN"

STEPS=400
e2e_small_toml "$WORK/tiny.toml" "$WORK" "batch_size = 4
steps = $STEPS
warmup_steps = 10
val_every = 0
val_batches = 0
log_every = 100
sample_tokens = 0"
cat >> "$WORK/tiny.toml" <<TOML

[comm]
timeout_s = 5

[checkpoint]
every_steps = 4
keep_last = 2

[run]
dir = "$WORK/runs"
name = "hang"
progress = "off"
TOML

# ---- the policy, against a fake mpirun -----------------------------------------------------------
# The fake ignores its arguments; FAKE_MODE and the launch number ($WORK/fake.n) decide what it does.
cat > "$WORK/fake-mpirun" <<'FAKE'
#!/usr/bin/env bash
n=$(( $(cat "$FAKE_DIR/fake.n" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_DIR/fake.n"
echo "fake mpirun launch $n ($FAKE_MODE)"
case $FAKE_MODE in
  config) echo "config: unknown key" >&2; exit 2 ;;
  setup-timeout)
    (( n == 1 )) && { echo "error: setup failed: broadcast of 4 bytes did not complete within 5 s: a peer rank died or stopped responding (rank 1 of 2)" >&2; exit 2; }
    exit 0 ;;
  setup-timeouts)  # launches 1, 3, 4, 5 time out in setup, launch 2 is a power cut
    (( n == 2 )) && exit 137
    echo "error: setup failed: broadcast of 4 bytes did not complete within 5 s: a peer rank died or stopped responding (rank 1 of 2)" >&2
    exit 2 ;;
  abort) exit 3 ;;
  fault-persists)  # the fault ladder's give-up; launch 2 wrote a checkpoint first, launch 3 is a power cut
    (( n == 2 )) && { mkdir -p "$FAKE_DIR/runs/policy/checkpoints"; : > "$FAKE_DIR/runs/policy/checkpoints/ckpt-8.h5"; }
    (( n == 3 )) && exit 137
    exit 4 ;;
  term) trap 'echo "fake got SIGTERM"; exit 143' TERM; sleep 30 & wait; exit 0 ;;
  orphan)
    if (( n == 1 )); then
      sleep 300 &
      echo $! > "$FAKE_DIR/orphan.pid"
      disown
      exit 3
    fi
    kill -0 "$(cat "$FAKE_DIR/orphan.pid")" 2>/dev/null && { echo "orphan of launch 1 still alive"; exit 5; }
    exit 0 ;;
  silent) (( n == 1 )) && { sleep 30; exit 0; }; exit 0 ;;
  flood) trap 'exit 143' TERM; head -c 400000 /dev/zero | tr '\0' 'x'; echo; sleep 30 & wait; exit 0 ;;
esac
FAKE
chmod +x "$WORK/fake-mpirun"
export FAKE_DIR=$WORK
policy() {  # policy <mode> <expected rc> <expected launches> <pattern> [perigee-run options]
  local mode=$1 want_rc=$2 want_launches=$3 pattern=$4 rc n
  shift 4
  rm -f "$WORK/fake.n"
  FAKE_MODE=$mode "$RUN_BIN" --np 2 --mpirun "$WORK/fake-mpirun" --backoff 0.1 --stall-timeout 0 "$@" \
    "$WORK/tiny.toml" --run.name=policy > "$WORK/policy.log" 2>&1 &
  SUP_PID=$!
  if [[ $mode == term ]]; then
    until grep -q "fake mpirun launch 1" "$WORK/policy.log"; do nap 0.02; done
    nap 0.2
    kill -TERM "$SUP_PID"
  fi
  wait "$SUP_PID"
  rc=$?
  SUP_PID=""
  n=$(grep -c "^fake mpirun launch" "$WORK/policy.log")
  if [[ $rc -ne $want_rc || $n -ne $want_launches ]] || ! grep -q -- "$pattern" "$WORK/policy.log"; then
    cat "$WORK/policy.log"
    fail "policy $mode: exit $rc after $n launch(es), expected exit $want_rc after $want_launches with '$pattern'"
  fi
  echo "policy $mode: exit $rc after $n launch(es): $(grep -m1 -- "$pattern" "$WORK/policy.log" | sed 's/^\[perigee-run [0-9:.]*\] //' | cut -c1-150)"
}
policy config 2 1 "not relaunching: a setup or config error does not heal"
policy setup-timeout 0 2 "not a config error: relaunching"
# A setup that times out again and again has a cause that repeats: three such launches in a row (a
# launch ending otherwise between them restarts the count) end the job with exit 2.
policy setup-timeouts 2 5 "not relaunching: the setup timed out in 3 launches in a row" --max-restarts 9
policy abort 3 3 "giving up: 2 restart(s) spent" --max-restarts 2
grep -q "restart 2 of 2 in 0.2 s" "$WORK/policy.log" || { cat "$WORK/policy.log"; fail "back-off did not double"; }
# Exit 4 is relaunched once per newest checkpoint: launch 1 gives up at step 0, launch 2 after writing
# step 8, launch 3 dies (137), launch 4 gives up at step 8 again: the end, though restarts are left.
rm -rf "$WORK/runs/policy"
policy fault-persists 4 4 "not relaunching: the fault ladder gave up twice with the newest checkpoint at checkpoint step 8" --max-restarts 9
grep -q "exit status 4 (the fault ladder gave up" "$WORK/policy.log" || { cat "$WORK/policy.log"; fail "exit 4 not described"; }
rm -rf "$WORK/runs/policy"
policy term 143 1 "fake got SIGTERM"
policy orphan 0 2 "killed 1 leftover process"
policy silent 0 2 "stall watchdog: no progress" --stall-timeout 1
# A reader that stops reading (a paused pager) must not freeze the supervisor: with its stdout a full
# pipe nobody drains, a SIGTERM still reaches the job, and perigee-run ends within the grace.
rm -f "$WORK/fake.n"
FAKE_MODE=flood "$RUN_BIN" --np 2 --mpirun "$WORK/fake-mpirun" --grace 1 --stall-timeout 0 "$WORK/tiny.toml" \
  --run.name=policy 2> "$WORK/flood.err" | { nap 20; cat > /dev/null; } &
FLOOD_PID=$(jobs -p | tail -1)
until [[ -s $WORK/fake.n ]]; do nap 0.05; done
nap 1
T_TERM=$(now)
pkill -TERM -f -- "--mpirun $WORK/fake-mpirun --grace 1" || fail "no perigee-run to stop"
while pgrep -f -- "--mpirun $WORK/fake-mpirun --grace 1" > /dev/null; do
  awk -v d="$(diff_s "$T_TERM" "$(now)")" 'BEGIN { exit !(d > 10) }' &&
    fail "perigee-run still running 10 s after SIGTERM with a stopped reader"
  nap 0.1
done
echo "policy flood: perigee-run ended $(diff_s "$T_TERM" "$(now)") s after SIGTERM with nobody reading its output"
kill "$FLOOD_PID" 2> /dev/null
wait "$FLOOD_PID" 2> /dev/null
"$RUN_BIN" --np 2 --mpirun "$WORK/fake-mpirun" "$WORK/tiny.toml" --checkpoint.every_steps=0 > "$WORK/policy.log" 2>&1
rc=$?
[[ $rc -eq 2 ]] && grep -q "a restart would start over" "$WORK/policy.log" || { cat "$WORK/policy.log"; fail "a config without checkpoints was not refused (exit $rc)"; }
echo "policy no-checkpoint: refused with exit 2"
for bad in "--train-bin $WORK/no-such-train" "--mpirun no-such-mpirun-in-path"; do
  # shellcheck disable=SC2086  # two words on purpose
  "$RUN_BIN" --np 2 $bad "$WORK/tiny.toml" > "$WORK/policy.log" 2>&1
  rc=$?
  [[ $rc -eq 2 ]] && grep -q "is not" "$WORK/policy.log" && ! grep -q "relaunch" "$WORK/policy.log" \
    || { cat "$WORK/policy.log"; fail "perigee-run $bad: exit $rc, expected 2 and no launch"; }
  echo "policy ${bad%% *}: $(head -1 "$WORK/policy.log")"
done

# ---- the real job -----------------------------------------------------------------------------------
METRICS="$WORK/runs/hang/metrics.jsonl"
"$RUN_BIN" --np 2 --max-restarts 5 --backoff 0.5 --backoff-max 2 --stall-timeout 10 --mpirun "$MPIEXEC" \
  --train-bin "$TRAIN_BIN" "$WORK/tiny.toml" > "$WORK/sup.log" 2>&1 &
SUP_PID=$!
MPIRUN_NAME=$(basename "$MPIEXEC" | cut -c1-15)
launches() { grep -ac "\] launch [0-9]* of at most" "$WORK/sup.log"; }
train_lines() {
  local n=0
  [[ -f $METRICS ]] && n=$(grep -ac '"type":"train"' "$METRICS")
  echo "${n:-0}"
}
sup_alive() { kill -0 "$SUP_PID" 2>/dev/null; }
# Sets MPIRUN_PID and RANK0/RANK1 (by MPI rank) of the current launch.
job_pids() {
  MPIRUN_PID=$(pgrep -P "$SUP_PID" -x "$MPIRUN_NAME" 2>/dev/null | head -1) || true
  RANK0="" RANK1=""
  [[ -n $MPIRUN_PID ]] || return 0
  for p in $(pgrep -P "$MPIRUN_PID" 2>/dev/null); do
    case $(tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -x "OMPI_COMM_WORLD_RANK=[0-9]*") in
      OMPI_COMM_WORLD_RANK=0) RANK0=$p ;;
      OMPI_COMM_WORLD_RANK=1) RANK1=$p ;;
    esac
  done
  SEEN_PIDS+=("$MPIRUN_PID" $RANK0 $RANK1)
}
# Waits until launch $1 runs both ranks and has trained $2 more steps.
wait_training() {
  local want=$1 more=$2 base deadline
  deadline=$(( $(date +%s) + 60 ))
  while (( $(launches) < want )); do
    sup_alive || fail "supervisor ended before launch $want"
    (( $(date +%s) < deadline )) || fail "launch $want did not start within 60 s"
    nap 0.02
  done
  base=$(train_lines)
  while true; do
    sup_alive || fail "supervisor ended during launch $want"
    (( $(date +%s) < deadline )) || fail "launch $want trained no $more steps within 60 s"
    job_pids
    [[ -n $RANK0 && -n $RANK1 ]] && (( $(train_lines) >= base + more )) && return 0
    nap 0.01
  done
}
# Waits for launch $1 and checks it came within $4 (default BOUND) s of $2 (the fault); prints the times.
expect_relaunch() {
  local want=$1 t_fault=$2 what=$3 bound=${4:-$BOUND} t_fail="" line
  while (( $(launches) < want )); do
    sup_alive || fail "$what: supervisor ended instead of relaunching"
    if [[ -z $t_fail ]] && (( $(grep -ac "\] launch $((want - 1)) failed" "$WORK/sup.log") > 0 )); then t_fail=$(now); fi
    [[ $(diff_s "$t_fault" "$(now)" | cut -d. -f1) -lt $((bound + 30)) ]] || fail "$what: no relaunch within $((bound + 30)) s"
    nap 0.02
  done
  local t_launch
  t_launch=$(now)
  [[ -n $t_fail ]] || t_fail=$t_launch
  line=$(grep -a "\] launch $((want - 1)) failed" "$WORK/sup.log" | tail -1)
  local total
  total=$(diff_s "$t_fault" "$t_launch")
  echo "$what: failure seen after $(diff_s "$t_fault" "$t_fail") s, relaunched after $total s (bound $bound s)"
  echo "  supervisor: ${line#*] }"
  awk -v t="$total" -v b="$bound" 'BEGIN { exit !(t <= b) }' || fail "$what: relaunch took $total s > $bound s"
}
expect_gone() {  # the processes $@ of an ended launch must be dead (or reaped)
  local p state
  for p in "$@"; do
    for _ in $(seq 1 300); do
      state=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) || break
      [[ -z $state || $state == Z ]] && break
      nap 0.01
    done
    state=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)
    [[ -z $state || $state == Z ]] || fail "process $p (state $state) outlived its launch"
  done
}

# 1. Rank 1 stops responding.
wait_training 1 40
job_pids
STOPPED=("$RANK1")
kill -STOP "$RANK1"
T=$(now)
expect_relaunch 2 "$T" "rank 1 SIGSTOP (MPI timeout)"
grep -aq "launch 1 failed.*exit status 3" "$WORK/sup.log" || fail "launch 1 did not end by the aborting collective timeout (exit 3)"
grep -aq "did not complete within 5 s: a peer rank died or stopped responding" "$WORK/sup.log" \
  || fail "no collective timeout message from rank 0"
expect_gone "$MPIRUN_PID" "${STOPPED[@]}"

# 2. Rank 0 stops while rank 1 waits in the allreduce, then dies.
wait_training 2 20
job_pids
kill -STOP "$RANK0"
nap 1
kill -9 "$RANK0"
T=$(now)
expect_relaunch 3 "$T" "rank 0 killed (-9) inside an allreduce"
grep -aq "launch 2 failed.*exit status 137" "$WORK/sup.log" || fail "launch 2 did not end by the rank's death (137)"
expect_gone "$MPIRUN_PID" "$RANK0" "$RANK1"

# 3. Every rank stops: only the stall watchdog can see it.
wait_training 3 20
job_pids
kill -STOP "$RANK0" "$RANK1"
T=$(now)
expect_relaunch 4 "$T" "all ranks SIGSTOP (stall watchdog)"
grep -aq "launch 3 failed.*killed by the watchdog" "$WORK/sup.log" || fail "launch 3 was not ended by the stall watchdog"
expect_gone "$MPIRUN_PID" "$RANK0" "$RANK1"

# 4. mpirun itself stops. The ranks talk to each other directly, so they train on to the last step,
#    then wait forever in MPI_Finalize (a fence through mpirun) where no collective timeout applies:
#    the stall watchdog sees that metrics.jsonl stopped growing and kills the job; the relaunch finds
#    the final checkpoint and ends at once. The bound counts the training that went on meanwhile.
wait_training 4 20
job_pids
SEEN_PIDS+=("$MPIRUN_PID")
kill -STOP "$MPIRUN_PID"
T=$(now)
expect_relaunch 5 "$T" "mpirun SIGSTOP (ranks finish, then hang in MPI_Finalize)" 60
line=$(grep -a "\] launch 4 failed" "$WORK/sup.log")
[[ $line == *"killed by the watchdog"* ]] || fail "launch 4 was not ended by the stall watchdog"
detected=$(sed 's/.*detected \([0-9.]*\) s after its last training step.*/\1/' <<< "$line")
awk -v d="$detected" 'BEGIN { exit !(d <= 12) }' || fail "launch 4: stall detected $detected s after the last step (> 12 s)"
expect_gone "$MPIRUN_PID" "$RANK0" "$RANK1"

wait "$SUP_PID"
SUP_RC=$?
SUP_PID=""
[[ $SUP_RC -eq 0 ]] || fail "perigee-run exited $SUP_RC"
grep -aq "job completed: launch 5" "$WORK/sup.log" || fail "launch 5 did not complete the job"
FINAL=$(printf "%s/runs/hang/checkpoints/ckpt-%08d.h5" "$WORK" "$STEPS")
[[ -f $FINAL ]] || fail "final checkpoint $FINAL missing"
"$CKPT_BIN" verify "$WORK/runs/hang/checkpoints" > "$WORK/verify.log" 2>&1 \
  || { cat "$WORK/verify.log"; fail "a checkpoint fails verification"; }
(( $(grep -ac '"type":"train","step":'"$STEPS"'.0' "$METRICS") >= 1 )) || fail "step $STEPS never logged"
for p in "${SEEN_PIDS[@]}"; do
  state=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)
  [[ -z $state || $state == Z ]] || fail "process $p is still alive (state $state)"
done

# 5. An eclipse pause ([orbit] eclipse = "pause") is silence by design: the trainer announces it in
#    metrics.jsonl and the stall watchdog waits for it. Mid-shadow at 200x: about 5 s of pause
#    against a 2 s stall timeout; no [checkpoint] every_steps (the eclipse policy checkpoints).
"$RUN_BIN" --np 2 --max-restarts 0 --stall-timeout 2 --mpirun "$MPIEXEC" --train-bin "$TRAIN_BIN" "$WORK/tiny.toml" \
  --run.name=eclipse --train.steps=30 --checkpoint.every_steps=0 --orbit.eclipse=pause --orbit.phase_deg=180 \
  --orbit.time_scale=200 > "$WORK/eclipse.log" 2>&1 || { cat "$WORK/eclipse.log"; fail "the eclipse run failed"; }
grep -aq "announced an eclipse pause" "$WORK/eclipse.log" || { cat "$WORK/eclipse.log"; fail "no eclipse pause seen"; }
grep -aq "stall watchdog: no progress" "$WORK/eclipse.log" && { cat "$WORK/eclipse.log"; fail "the watchdog killed an eclipse pause"; }
echo "eclipse pause: $(grep -a "compute paused" "$WORK/eclipse.log" | sed 's/.*paused for //'), not a stall"

# 6. A reader that goes away (`perigee-run ... | head`) must not kill the supervisor (SIGPIPE, exit
#    141), which would end the job through PDEATHSIG: the run goes on to its last checkpoint.
"$RUN_BIN" --np 2 --max-restarts 0 --mpirun "$MPIEXEC" --train-bin "$TRAIN_BIN" "$WORK/tiny.toml" \
  --run.name=pipe --train.steps=40 --train.log_every=1 --checkpoint.every_steps=20 2>&1 | head -c 300 > /dev/null
PIPE_RC=${PIPESTATUS[0]}
[[ $PIPE_RC -eq 0 ]] || fail "perigee-run exited $PIPE_RC after its reader went away (141 = killed by SIGPIPE)"
PIPE_FINAL=$(printf "%s/runs/pipe/checkpoints/ckpt-%08d.h5" "$WORK" 40)
[[ -f $PIPE_FINAL ]] || fail "the run whose reader went away did not finish ($PIPE_FINAL missing)"
echo "reader gone after 300 bytes: the job still finished"
# 7. A resume load is silent too (the file is read, nothing is written): rank 0 announces it
#    ("quiet_s" = [checkpoint] timeout_s) and the watchdog waits. A first launch checkpoints step 12; the
#    relaunch's storage takes 8 s longer per load (the plan's load_delay) against a 4 s stall timeout
#    (the margin covers start-up and the final checkpoint on a loaded machine); the record after the
#    load ends the allowance.
"$RUN_BIN" --np 2 --max-restarts 0 --mpirun "$MPIEXEC" --train-bin "$TRAIN_BIN" "$WORK/tiny.toml" \
  --run.name=slowload --train.steps=12 > "$WORK/slowload1.log" 2>&1 || { cat "$WORK/slowload1.log"; fail "the first slow-load run failed"; }
echo "load_delay 8" > "$WORK/slowload.txt"
"$RUN_BIN" --np 2 --max-restarts 0 --stall-timeout 4 --mpirun "$MPIEXEC" --train-bin "$TRAIN_BIN" "$WORK/tiny.toml" \
  --run.name=slowload --train.steps=16 --fault.plan="$WORK/slowload.txt" > "$WORK/slowload.log" 2>&1 \
  || { cat "$WORK/slowload.log"; fail "the watchdog or a timeout ended a slow resume load"; }
grep -aq "announced a checkpoint load of up to 600.0 s" "$WORK/slowload.log" || { cat "$WORK/slowload.log"; fail "no checkpoint load announced"; }
grep -aq "stall watchdog: no progress" "$WORK/slowload.log" && { cat "$WORK/slowload.log"; fail "the watchdog killed a slow checkpoint load"; }
grep -aq '"type":"checkpoint_loaded","step":[1-9][0-9]*\.0,.*"outcome":"loaded"' "$WORK/runs/slowload/metrics.jsonl" || fail "no record after the load"
grep -aq "resumed from step 12" "$WORK/slowload.log" || { cat "$WORK/slowload.log"; fail "the relaunch did not resume"; }
[[ -f $(printf "%s/runs/slowload/checkpoints/ckpt-%08d.h5" "$WORK" 16) ]] || fail "the slow-load run did not finish"
echo "slow resume load (8 s against a 4 s stall timeout): announced, not a stall"
echo "PASS in $(diff_s "$T_START" "$(now)") s"
