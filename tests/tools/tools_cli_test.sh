#!/usr/bin/env bash
# perigee-ckpt and perigee-data as scripts use them: exit statuses, one line per verdict, and bad
# input named. A real 1-process training run writes the checkpoints.
#   tools_cli_test.sh <perigee-data> <perigee-train> <perigee-ckpt> <perigee-run>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 CKPT_BIN=$3 RUN_BIN=$4
WORK=$(mktemp -d /tmp/perigee_tools.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
expect() {  # expect <exit status> <pattern> <command...>: that status and the pattern in the output
  local want=$1 pattern=$2 out rc
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  [[ $rc -eq $want ]] && grep -q -- "$pattern" <<< "$out" || fail "$(basename "$1") ${*:2} -> exit $rc (want $want): $out"
  echo "ok: $(basename "$1") ${*:2}: $(grep -m1 -- "$pattern" <<< "$out" | cut -c1-140)"
}

# perigee-data: a bad command line exits 2 naming the option.
printf 'one paragraph\n\nanother\n' > "$WORK/t.txt"
expect 2 "perigee-data: --seed: expected an integer in \[0, 2^64), got '-1'" "$DATA_BIN" --input "$WORK/t.txt" --out "$WORK/q" --seed -1
expect 2 "perigee-data: --val-fraction: expected a number in \[0, 1), got 'nan'" "$DATA_BIN" --input "$WORK/t.txt" --out "$WORK/q" --val-fraction nan
expect 2 "perigee-data: --out is required" "$DATA_BIN" --input "$WORK/t.txt"
[[ ! -e $WORK/q_train.bin ]] || fail "perigee-data wrote output after a bad command line"
expect 1 "fortune folder $WORK/t.txt is not a folder" "$DATA_BIN" --fortunes --fortunes-dir "$WORK/t.txt" --out "$WORK/q"
expect 0 "warning: --val-fraction 0: the validation split is empty" "$DATA_BIN" --input "$WORK/t.txt" --out "$WORK/q0" --val-fraction 0

e2e_make_tokens "$DATA_BIN" "$WORK"
e2e_micro_toml "$WORK" 6 tools
cat >> "$WORK/tiny.toml" <<TOML
[checkpoint]
dir = "$WORK/ck"
every_steps = 2
keep_last = 3
TOML
"$TRAIN_BIN" "$WORK/tiny.toml" > "$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; fail "training failed"; }
CK=$WORK/ck
[[ -f $CK/ckpt-00000006.h5 && -f $CK/ckpt-00000004.h5 ]] || fail "checkpoints missing: $(ls "$CK")"

# verify: all good -> 0 and no note.
expect 0 "OK: 3 checkpoint(s), 0 failed" "$CKPT_BIN" verify "$CK"
"$CKPT_BIN" verify "$CK" | grep -q "^note" && fail "a note on a good folder"
# A checkpoint a resume set aside (ckpt-<step>.h5.unreadable) is named with what it holds now.
mkdir "$WORK/ck_aside" && cp "$CK/ckpt-00000004.h5" "$WORK/ck_aside/"
cp "$CK/ckpt-00000006.h5" "$WORK/ck_aside/ckpt-00000006.h5.unreadable"
cp "$CK/ckpt-00000004.h5" "$WORK/ck_aside/ckpt-00000009.h5.unreadable"
expect 0 "note  ckpt-00000006.h5.unreadable: set aside by a resume that could not use it (removed when the run commits step 6); it verifies now" \
  "$CKPT_BIN" verify "$WORK/ck_aside"
expect 0 "note  ckpt-00000009.h5.unreadable: .*it still fails: the file name says step 9 but the file holds step 4" \
  "$CKPT_BIN" verify "$WORK/ck_aside"

# A cut write of the orbit clock is named, and the checkpoints still verify.
echo '{"epoch_unix":' > "$CK/orbit.json.tmp"
expect 0 "note  orbit.json.tmp: leftover of a cut write of the orbit clock (orbit.json is kept" "$CKPT_BIN" verify "$CK"
rm "$CK/orbit.json.tmp"
# The latest pointer as the store judges it: behind the newest, malformed, empty, stale.
cp "$CK/latest" "$WORK/latest.good"
echo "ckpt-00000004.h5" > "$CK/latest"
expect 0 "note  'latest' names 'ckpt-00000004.h5' but 'ckpt-00000006.h5' is newer" "$CKPT_BIN" verify "$CK"
printf '../ck/ckpt-00000006.h5\n' > "$CK/latest"
expect 0 "note  ignoring the 'latest' pointer: .* does not name a checkpoint file" "$CKPT_BIN" verify "$CK"
: > "$CK/latest"
expect 0 "note  ignoring the 'latest' pointer" "$CKPT_BIN" verify "$CK"
echo "ckpt-00000009.h5" > "$CK/latest"
expect 0 "note  stale 'latest' pointer: 'ckpt-00000009.h5' is not a checkpoint file" "$CKPT_BIN" verify "$CK"
cp "$WORK/latest.good" "$CK/latest"

# Bytes appended after the HDF5 data: the checkpoint still verifies, with a note saying how many.
cp "$CK/ckpt-00000006.h5" "$WORK/appended.h5"
printf 'trailing garbage' >> "$WORK/appended.h5"
expect 0 "note  appended.h5: 16 byte(s) after the HDF5 data" "$CKPT_BIN" verify "$WORK/appended.h5"
out=$("$CKPT_BIN" verify "$CK/ckpt-00000006.h5") || fail "verify of an intact file failed: $out"
grep -q "after the HDF5 data" <<< "$out" && fail "an intact file got the appended-bytes note: $out"

# A corrupt file: FAIL on one line (no trace lines), exit 1.
cp "$CK/ckpt-00000004.h5" "$WORK/keep4.h5"
truncate -s 3000 "$CK/ckpt-00000004.h5"
out=$("$CKPT_BIN" verify "$CK")
[[ $? -eq 1 ]] || fail "verify of a truncated file did not exit 1: $out"
grep -q "^FAIL  ckpt-00000004.h5: checkpoint .*ckpt-00000004.h5': cannot open as HDF5" <<< "$out" || fail "no FAIL line: $out"
grep -q "^    at " <<< "$out" && fail "trace lines in verify's output: $out"
echo "ok: verify: $(grep -m1 '^FAIL  ckpt' <<< "$out" | cut -c1-140)"
cp "$WORK/keep4.h5" "$CK/ckpt-00000004.h5"

# diff: identical 0, different 1, a buffer neither file has 2 (a typo is no difference).
expect 0 "IDENTICAL" "$CKPT_BIN" diff "$CK/ckpt-00000006.h5" "$CK/ckpt-00000006.h5"
expect 1 "DIFFERENT" "$CKPT_BIN" diff "$CK/ckpt-00000004.h5" "$CK/ckpt-00000006.h5" --buffer params
expect 2 "perigee-ckpt: --buffer nope: neither file has it (they have: adam_m, adam_v, params)" \
  "$CKPT_BIN" diff "$CK/ckpt-00000006.h5" "$CK/ckpt-00000006.h5" --buffer nope
# An unknown command exits 2 naming it and the commands.
expect 2 "perigee-ckpt: unknown command 'frob' (verify, info or diff" "$CKPT_BIN" frob "$CK"

# info: the header; a missing file exits 2 naming it.
expect 0 "step        6" "$CKPT_BIN" info "$CK/ckpt-00000006.h5"
expect 2 "$WORK/none.h5" "$CKPT_BIN" info "$WORK/none.h5"
# A link loop or a folder is called what it is, not "file not found".
ln -s "$WORK/ckloop" "$WORK/ckloop"
expect 2 "checkpoint '$WORK/ckloop': Too many levels of symbolic links" "$CKPT_BIN" info "$WORK/ckloop"
expect 2 "$WORK/ckloop is neither a checkpoint folder nor a file (Too many levels of symbolic links)" "$CKPT_BIN" verify "$WORK/ckloop"
expect 2 "checkpoint '$CK': a folder, not a checkpoint file" "$CKPT_BIN" info "$CK"

# perigee-train: paths that are no input file are setup errors (exit 2) naming the path, never an
# abort (which perigee-run would relaunch as a dead rank) nor a hang on a FIFO without a writer.
mkfifo "$WORK/fifo"
ln -s "$WORK/loop" "$WORK/loop"
expect 2 "\[fault\] plan $WORK is a folder, not a file" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK" --run.name=p1
expect 2 "\[fault\] plan $WORK/fifo is a FIFO, not a file" timeout 20 "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/fifo" --run.name=p2
expect 2 "\[fault\] plan $WORK/loop: Too many levels of symbolic links" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/loop" --run.name=p3
expect 2 "links.file $WORK is a folder, not a file" "$TRAIN_BIN" "$WORK/tiny.toml" --comm.backend=links --links.topology=file --links.file="$WORK" --run.name=p4
expect 2 "config file $WORK/fifo is a FIFO, not a file" timeout 20 "$TRAIN_BIN" "$WORK/fifo"
expect 2 "the config file path is empty" "$TRAIN_BIN" ""
expect 2 "the config file path is empty" "$RUN_BIN" ""
cp "$WORK/tiny.toml" "$WORK/bad"$'\xff'".toml"
"$TRAIN_BIN" "$WORK/bad"$'\xff'".toml" --print-config > "$WORK/print.json" 2>&1 \
  || { cat "$WORK/print.json"; fail "--print-config of a config path that is not UTF-8 failed"; }
grep -q '"source": ".*bad'$'\xef\xbf\xbd''.toml"' "$WORK/print.json" || { cat "$WORK/print.json"; fail "no U+FFFD in the source"; }
expect 2 "token file $WORK/fifo: not a regular file" timeout 20 "$TRAIN_BIN" "$WORK/tiny.toml" --data.train_file="$WORK/fifo" --run.name=p6
expect 2 "checkpoint folder $WORK/loop: Too many levels of symbolic links" "$TRAIN_BIN" "$WORK/tiny.toml" --checkpoint.dir="$WORK/loop" --run.name=p5
# Reusing a run name for another model is refused before its config.json is replaced.
cp "$WORK/runs/tools/config.json" "$WORK/config.before"
expect 2 "run folder $WORK/runs/tools holds a run of another model (model.n_embd: 16 -> 32)" "$TRAIN_BIN" "$WORK/tiny.toml" --model.n_embd=32 --checkpoint.dir="$WORK/ck_other"
cmp -s "$WORK/runs/tools/config.json" "$WORK/config.before" || fail "the refused run replaced config.json"
# A fault plan aimed past the job is refused naming its line; an entry the run never reaches is a warning.
printf 'seed 3\nfault target=parameter step=2 rank=7\n' > "$WORK/plan_rank.txt"
expect 2 "fault plan line 2: rank 7, but the job has 1 rank(s), 0 to 0" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_rank.txt" --run.name=p7
printf 'death rank=0 step=-5\n' > "$WORK/plan_step.txt"
expect 2 "fault plan line 1: bad value '-5' for step (steps count from 0)" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_step.txt" --run.name=p8
printf 'fault target=gradient_post_allreduce step=50 element=3\n' > "$WORK/plan_late.txt"
expect 0 "fault plan line 1: the gradient_post_allreduce fault at step 50 never fires (this target is hit at steps 0 to 1 of \[train\] steps = 2)" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_late.txt" --train.steps=2 --checkpoint.dir="$WORK/ck_late" --run.name=p9
# Plans that would do nothing, or hang: refused at setup, naming the line.
printf 'fault target=gemm_output step=1\n' > "$WORK/plan_gemm.txt"
expect 2 "fault plan line 1: target gemm_output is never hit in this job: .*with \[fault\] abft = true, gemm_output" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_gemm.txt" --run.name=p10
printf 'rate target=message probability=1\n' > "$WORK/plan_msg.txt"
expect 2 "fault plan line 1: target message is never hit in this job" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_msg.txt" --run.name=p11
printf 'rate target=parameter per_bit_per_day=inf\n' > "$WORK/plan_inf.txt"
expect 2 "fault plan line 1: bad value 'inf' for per_bit_per_day" timeout 20 "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_inf.txt" --run.name=p12
printf 'fault target=parameter step=1 element=0 bit=30\nfault target=parameter step=1 element=0 bit=30\n' > "$WORK/plan_twice.txt"
expect 2 "fault plan line 2: repeats line 1 (the same flips twice cancel each other)" "$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/plan_twice.txt" --run.name=p13

# A newer checkpoint of another model in the folder: the run refuses to resume from an older one (its
# first commit would delete the newer file), and the file is still there.
"$TRAIN_BIN" "$WORK/tiny.toml" --model.n_embd=32 --train.steps=8 --checkpoint.dir="$WORK/ck32" \
  --run.name=other > "$WORK/other.log" 2>&1 || { cat "$WORK/other.log"; fail "the 32-channel run failed"; }
cp "$WORK/ck32/ckpt-00000008.h5" "$CK/" || fail "no step-8 checkpoint of the 32-channel run"
expect 2 "newer checkpoint .*ckpt-00000008.h5 (step 8) does not match this job: .*n_embd is 32 in the checkpoint, 16 expected" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=9 --checkpoint.dir="$WORK/ck" --run.name=mix
[[ -f $CK/ckpt-00000008.h5 ]] || fail "the newer checkpoint was deleted"
# So does a newer checkpoint written by a newer build (a format version this one cannot read): it is
# another build's file, not a damaged one, and is neither set aside nor deleted.
# (h5py is Debian's python3-h5py, from scripts/install_deps.sh, in /usr/bin/python3.)
PY=""
for p in python3 /usr/bin/python3; do "$p" -c 'import h5py' > /dev/null 2>&1 && { PY=$p; break; }; done
[[ -n $PY ]] || fail "no python3 with h5py (apt-get install python3-h5py)"
mkdir "$WORK/ck_ver" && cp "$CK/ckpt-00000004.h5" "$CK/ckpt-00000006.h5" "$WORK/ck_ver/"
"$PY" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); f.attrs.modify("format_version", 3)' \
  "$WORK/ck_ver/ckpt-00000006.h5" || fail "h5py could not set the format version"
expect 2 "newer checkpoint .*ckpt-00000006.h5 (step 6) does not match this job: .*format version 3 is not supported (this build reads 1 to 2; a newer Perigee wrote it)" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=9 --checkpoint.dir="$WORK/ck_ver" --run.name=ver
[[ -f $WORK/ck_ver/ckpt-00000006.h5 ]] || fail "the newer build's checkpoint was moved or deleted: $(ls "$WORK/ck_ver")"

# One job per folder: a second job on a live job's run folder, or on its checkpoint folder, is refused
# naming the first one's pid (two jobs in one folder delete each other's checkpoints); after a kill -9
# of the first the folder is free at once.
"$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=100000000 --checkpoint.dir="$WORK/ck_busy" --checkpoint.every_steps=50 \
  --run.name=busy > "$WORK/busy.log" 2>&1 &
BUSY=$!
for _ in $(seq 1 400); do grep -q "pid $BUSY " "$WORK/ck_busy/.perigee.lock" 2>/dev/null && break; sleep 0.05; done
grep -q "pid $BUSY " "$WORK/ck_busy/.perigee.lock" 2>/dev/null || { cat "$WORK/busy.log"; fail "the long job never locked its folder"; }
expect 2 "run folder $WORK/runs/busy is in use by another job (pid $BUSY on host" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=3 --checkpoint.dir="$WORK/ck_other" --run.name=busy
expect 2 "checkpoint folder $WORK/ck_busy is in use by another job (pid $BUSY on host" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=3 --checkpoint.dir="$WORK/ck_busy" --run.name=busy2
# Under perigee-run on 2 ranks with a short comm deadline: rank 0's refusal reaches rank 1 before its
# broadcast times out (the lock wait is at most half the deadline), so nothing is relaunched.
SUP_BUSY=$("$RUN_BIN" --np 2 "$WORK/tiny.toml" --run.name=busy --comm.timeout_s=2 --checkpoint.dir="$WORK/ck_other" 2>&1)
SUP_RC=$?
[[ $SUP_RC -eq 2 ]] && grep -q "run folder $WORK/runs/busy is in use by another job (pid $BUSY" <<< "$SUP_BUSY" \
  && ! grep -q "launch 2 of" <<< "$SUP_BUSY" \
  || fail "perigee-run on a busy run folder: exit $SUP_RC (want 2, no relaunch): $SUP_BUSY"
echo "ok: perigee-run on a busy run folder with timeout_s = 2: exit 2, no relaunch"
# Its checkpoint folder removed under it: the next checkpoint makes it anew and locks it again, so a
# second job is still refused (before, the second job found no lock and the two deleted each other's
# files).
rm -rf "$WORK/ck_busy"
for _ in $(seq 1 400); do grep -q "pid $BUSY " "$WORK/ck_busy/.perigee.lock" 2>/dev/null && break; sleep 0.05; done
grep -q "checkpoint folder $WORK/ck_busy (or its lock file) was removed while the job ran: locked again" "$WORK/busy.log" \
  || { tail -5 "$WORK/busy.log"; fail "the long job did not take its removed checkpoint folder back"; }
expect 2 "checkpoint folder $WORK/ck_busy is in use by another job (pid $BUSY on host" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=3 --checkpoint.dir="$WORK/ck_busy" --run.name=busy3
kill -0 "$BUSY" 2>/dev/null || { cat "$WORK/busy.log"; fail "the long job ended early"; }
kill -9 "$BUSY"
wait "$BUSY" 2>/dev/null
expect 0 "nothing to train\|trained steps" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=3 --checkpoint.dir="$WORK/ck_busy" --run.name=busy

# Resuming with checkpointing off warns that the run writes no checkpoint of its own.
mkdir "$WORK/ck16" && cp "$CK/ckpt-00000006.h5" "$WORK/ck16/"
expect 0 "resumed from $WORK/ck16 at step 6, but checkpointing is off" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=7 --checkpoint.dir="$WORK/ck16" --checkpoint.every_steps=0 --run.name=off

# A resume at a step whose validation the first run recorded (its last step) does not validate it again:
# one val record per step in the run's metrics.jsonl (0, 2 and 4 from the first run, 6 from the second).
VAL=(--train.val_every=2 --train.val_batches=1 --checkpoint.dir="$WORK/ck_val" --run.name=val)
"$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=4 "${VAL[@]}" > "$WORK/val1.log" 2>&1 || { cat "$WORK/val1.log"; fail "val run 1 failed"; }
expect 0 "validation at step 4: recorded by the run that wrote the checkpoint" "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=6 "${VAL[@]}"
VALS=$(grep -a '"type":"val"' "$WORK/runs/val/metrics.jsonl" | grep -ao '"step":[0-9.]*' | tr '\n' ' ')
[[ $VALS == '"step":0.0 "step":2.0 "step":4.0 "step":6.0 ' ]] || fail "val records at: $VALS"
# A damaged config.json in the run folder: which model it ran is unknown, and the job says so.
"$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=1 --run.name=cj --checkpoint.dir="$WORK/ck_cj" > "$WORK/cj.log" 2>&1 \
  || { cat "$WORK/cj.log"; fail "the cj run failed"; }
printf '{"model": {"n_emb' > "$WORK/runs/cj/config.json"
expect 0 "run folder $WORK/runs/cj: its config.json is no JSON object (damaged?)" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=2 --run.name=cj --checkpoint.dir="$WORK/ck_cj"
# More val batches than the val file holds: said once at setup (each validation evaluates them once).
expect 0 "\[train\] val_batches = 1000, but $WORK/tok_val.bin holds [0-9]* batch(es) of 2 x 16 tokens" \
  "$TRAIN_BIN" "$WORK/tiny.toml" --train.steps=2 --train.val_every=2 --train.val_batches=1000 --run.name=valcap --checkpoint.dir="$WORK/ck_valcap"

# perigee-run with its output in a file (here a pipe): progress = "auto" draws no bar into it (Open MPI
# gives the ranks a terminal whatever mpirun's output is, so perigee-run passes --run.progress=off).
expect 0 "command: .*--run.progress=off" "$RUN_BIN" --np 1 "$WORK/tiny.toml" --train.steps=2 \
  --checkpoint.dir="$WORK/ck_sup" --run.name=sup
SUP_OUT=$("$RUN_BIN" --np 1 "$WORK/tiny.toml" --train.steps=3 --checkpoint.dir="$WORK/ck_sup" --run.name=sup 2>&1)
grep -q '\[#' <<< "$SUP_OUT" && fail "a progress bar in perigee-run's piped output: $SUP_OUT"

# perigee-run without a run name or checkpoint folder: warned that a rerun after a power cut of the
# node would start over in a new folder.
grep -v -e '^name = ' -e "^dir = \"$WORK/ck\"" "$WORK/tiny.toml" > "$WORK/noname.toml"
expect 0 "warning: \[run\] name is empty, so this run's folder is named now" "$RUN_BIN" --np 1 "$WORK/noname.toml" --train.steps=1

# perigee-run: numbers are whole finite texts in range (CLI11's own checks let nan through, and printed
# their range with 300 digits), a stall timeout under a second is refused, and so are times past 1e8 s
# (added to clock time points, a 1e10 s grace overflowed into the past and killed at once).
expect 2 "--np: expected an integer >= 1, got '0'" "$RUN_BIN" --np 0 "$WORK/tiny.toml"
expect 2 "--backoff-max: expected a finite number of seconds in \[0, 1e8\], got 'nan'" "$RUN_BIN" --backoff-max nan "$WORK/tiny.toml"
expect 2 "--grace: expected a finite number of seconds in \[0, 1e8\], got 'nan'" "$RUN_BIN" --grace nan "$WORK/tiny.toml"
expect 2 "--grace: expected a finite number of seconds in \[0, 1e8\], got '1e10'" "$RUN_BIN" --grace 1e10 "$WORK/tiny.toml"
expect 2 "--backoff: expected a finite number of seconds in \[0, 1e8\], got '1e10'" "$RUN_BIN" --backoff 1e10 "$WORK/tiny.toml"
expect 2 "--stall-timeout: expected 0 (off) or a finite number in \[1, 1e8\], got '0.01'" "$RUN_BIN" --stall-timeout 0.01 "$WORK/tiny.toml"
expect 2 "--max-restarts: expected an integer in \[0, 1000000\], got '-1'" "$RUN_BIN" --max-restarts -1 "$WORK/tiny.toml"
expect 2 "--max-restarts: expected an integer in \[0, 1000000\], got '2147483647'" "$RUN_BIN" --max-restarts 2147483647 "$WORK/tiny.toml"
