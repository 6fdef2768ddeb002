#!/usr/bin/env bash
# End-to-end over emulated laser links: perigee-train on 4 real ranks with [comm] backend = "links"
# on a 2 x 2 +Grid (torus2d, grid mapping) must train like the plain MPI run (same first loss, final
# loss within 1e-4 relative: only the summation order differs), log the emulated link time per step
# and record link_ms in metrics.jsonl; with gradient buckets (overlapped on the links' worker
# thread) it trains alike. A constellation cut in two (outages on every link of a
# satellite) must end the run with an error naming the missing route, not hang; so must a peer
# that stops responding while buckets are in flight (the deadline ends the job). A kill -9 of every
# rank mid-run resumes from its checkpoint and ends on the uninterrupted run's loss bit for bit.
#   links_e2e.sh <perigee-data> <perigee-train> <mpiexec>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2 MPIEXEC=$3
WORK=$(mktemp -d /tmp/perigee_links.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_mpi_flags "$MPIEXEC"
e2e_make_tokens "$DATA_BIN" "$WORK"

e2e_small_toml "$WORK/base.toml" "$WORK" "batch_size = 8
steps = 5
warmup_steps = 1
val_every = 0
sample_tokens = 0"
cat >> "$WORK/base.toml" <<TOML

[run]
dir = "$WORK/runs"
TOML

final_loss() { grep '"type":"train"' "$1" | tail -1 | sed 's/.*"loss":\([^,}]*\).*/\1/'; }
first_loss() { grep '"type":"train"' "$1" | head -1 | sed 's/.*"loss":\([^,}]*\).*/\1/'; }

"${MPI[@]}" -np 4 "$TRAIN_BIN" "$WORK/base.toml" --run.name=mpi --comm.backend=mpi > "$WORK/mpi.log" 2>&1 \
  || { cat "$WORK/mpi.log"; fail "MPI reference run failed"; }
"${MPI[@]}" -np 4 "$TRAIN_BIN" "$WORK/base.toml" --run.name=links --comm.backend=links --comm.algorithm=torus2d \
  --links.topology=grid --links.planes=2 --links.sats_per_plane=2 --links.fixed_latency_ms=5 \
  --links.bandwidth_gbps=10 --links.mapping=grid --links.time_scale=0.2 > "$WORK/links.log" 2>&1 \
  || { cat "$WORK/links.log"; fail "links run failed"; }
grep -q "gradients over links (" "$WORK/links.log" || { cat "$WORK/links.log"; fail "the log does not name the links backend"; }
grep -q "ms emulated" "$WORK/links.log" || { cat "$WORK/links.log"; fail "no emulated link time in the step lines"; }
M="$WORK/runs/links/metrics.jsonl"
grep '"type":"train"' "$M" | grep -q '"link_ms":[1-9]' || { cat "$M"; fail "link_ms not recorded (or zero)"; }
a=$(first_loss "$WORK/runs/mpi/metrics.jsonl") b=$(first_loss "$M")
[[ "$a" == "$b" ]] || fail "first loss differs: mpi $a vs links $b"
a=$(final_loss "$WORK/runs/mpi/metrics.jsonl") b=$(final_loss "$M")
python3 - "$a" "$b" <<'PY' || fail "final loss differs: mpi $a vs links $b"
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if abs(a - b) <= 1e-4 * abs(a) else 1)
PY

# bf16 gradients over the same links ([comm] grad_dtype = "bf16"): half the bytes, so less modelled
# link time per step than fp32 (the bandwidth term halves; the hop latency stays), and a final loss
# within 1 % of the fp32 run (the gradients carry bf16 rounding).
"${MPI[@]}" -np 4 "$TRAIN_BIN" "$WORK/base.toml" --run.name=links_bf16 --comm.backend=links --comm.algorithm=torus2d \
  --links.topology=grid --links.planes=2 --links.sats_per_plane=2 --links.fixed_latency_ms=5 \
  --links.bandwidth_gbps=10 --links.mapping=grid --links.time_scale=0.2 --comm.grad_dtype=bf16 > "$WORK/bf16.log" 2>&1 \
  || { cat "$WORK/bf16.log"; fail "links run with bf16 gradients failed"; }
grep -q "all-reduced as bf16" "$WORK/bf16.log" || { cat "$WORK/bf16.log"; fail "the log does not say bf16 gradients"; }
M16="$WORK/runs/links_bf16/metrics.jsonl"
c=$(final_loss "$M16")
python3 - "$M" "$M16" "$b" "$c" <<'PY' || fail "bf16 gradients: link time or loss off (fp32 loss $b, bf16 $c)"
import json, sys
def link_ms(path):
    return sum(json.loads(l)["link_ms"] for l in open(path) if '"type":"train"' in l)
fp32, bf16 = link_ms(sys.argv[1]), link_ms(sys.argv[2])
print(f"link ms over the run: fp32 {fp32:.3f}, bf16 {bf16:.3f}")
a, b = float(sys.argv[3]), float(sys.argv[4])
sys.exit(0 if bf16 < fp32 and abs(a - b) <= 1e-2 * abs(a) else 1)
PY

# Gradient buckets over the links ([comm] bucket_mb 10 kB: several all-reduces per step, started on
# the links' worker thread while the backward pass goes on): trains like the run above (final loss
# within 1e-4 relative: the buckets' schedules sum in another order on 4 ranks).
"${MPI[@]}" -np 4 "$TRAIN_BIN" "$WORK/base.toml" --run.name=links_buckets --comm.backend=links --comm.algorithm=torus2d \
  --links.topology=grid --links.planes=2 --links.sats_per_plane=2 --links.fixed_latency_ms=5 \
  --links.bandwidth_gbps=10 --links.mapping=grid --links.time_scale=0.2 --comm.bucket_mb=0.01 > "$WORK/buckets.log" 2>&1 \
  || { cat "$WORK/buckets.log"; fail "links run with gradient buckets failed"; }
grep -q "overlapped with the backward pass in buckets of 0.0 MiB over links" "$WORK/buckets.log" \
  || { cat "$WORK/buckets.log"; fail "the log does not say the buckets overlap over the links"; }
python3 - "$WORK/runs/links_buckets/metrics.jsonl" <<'PY' || fail "the buckets did not start during the backward pass"
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "train"]
early = [int(r["buckets_overlapped"]) for r in steps]
print("links buckets: all-reduces per step", [int(r["buckets"]) for r in steps][:3], "started early", early[:3])
sys.exit(0 if steps and min(early) >= 1 else 1)
PY
d=$(final_loss "$WORK/runs/links_buckets/metrics.jsonl")
python3 - "$b" "$d" <<'PY' || fail "final loss differs: links $b vs links with buckets $d"
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if abs(a - b) <= 1e-4 * abs(a) else 1)
PY

# A cut constellation: satellite 1 of a 3-satellite ring loses both its links. Small buckets, so the
# failure comes from an all-reduce running on the links' worker thread during the backward pass.
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=cut --comm.backend=links --comm.algorithm=ring \
  --links.topology=grid --links.planes=1 --links.sats_per_plane=3 --links.fixed_latency_ms=1 --comm.bucket_mb=0.01 \
  "--links.outages=0-1@0:1e9;1-2@0:1e9" --comm.timeout_s=20 > "$WORK/cut.log" 2>&1
rc=$?
[[ $rc -ne 0 ]] || { cat "$WORK/cut.log"; fail "the cut constellation trained anyway"; }
grep -qi "no route" "$WORK/cut.log" || { cat "$WORK/cut.log"; fail "the error does not name the missing route"; }
# torus2d on ranks that form no grid block: a setup error (exit 2) that says which mapping would.
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=torus_spread --comm.backend=links \
  --comm.algorithm=torus2d --links.mapping=spread > "$WORK/torus_spread.log" 2>&1
rc=$?
[[ $rc -eq 2 ]] && grep -q 'algorithm = "torus2d" needs the 2 ranks laid out as a block of a +Grid' "$WORK/torus_spread.log" \
  || { cat "$WORK/torus_spread.log"; fail "torus2d with mapping spread: exit $rc without the grid advice"; }
# A peer that stops responding while gradient buckets are in flight on the links' worker thread:
# the worker's deadline ([comm] timeout_s 3) must end the job with the peer-lost error, not hang.
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=stall --comm.backend=links --comm.algorithm=ring \
  --links.topology=grid --links.planes=1 --links.sats_per_plane=2 --links.fixed_latency_ms=1 --comm.bucket_mb=0.01 \
  --comm.timeout_s=3 --train.steps=100000 > "$WORK/stall.log" 2>&1 &
JOB=$!
for _ in $(seq 1 300); do grep -q "step " "$WORK/stall.log" 2>/dev/null && break; sleep 0.1; done
VICTIM=$(pgrep -f "$(basename "$TRAIN_BIN").*run.name=stall" | sort -n | tail -1 || true)
[[ -n "$VICTIM" ]] || { kill -9 $JOB 2>/dev/null; cat "$WORK/stall.log"; fail "no rank of the stall run found"; }
kill -STOP "$VICTIM"
T0=$SECONDS
for _ in $(seq 1 300); do kill -0 $JOB 2>/dev/null || break; sleep 0.1; done
if kill -0 $JOB 2>/dev/null; then
  kill -9 "$VICTIM" $JOB 2>/dev/null; kill -CONT "$VICTIM" 2>/dev/null
  cat "$WORK/stall.log"; fail "the job hung after a rank stopped (links worker thread)"
fi
kill -9 "$VICTIM" 2>/dev/null; kill -CONT "$VICTIM" 2>/dev/null
grep -q "a peer rank died or stopped responding" "$WORK/stall.log" \
  || { cat "$WORK/stall.log"; fail "the stalled peer is not named as the cause"; }
echo "stalled peer over the links: job ended $((SECONDS - T0)) s after the stop"

# A power cut (kill -9 of every rank) while buckets go over the links, then a restart: it resumes
# from the newest checkpoint and ends on the uninterrupted run's final loss, bit for bit.
CUT_ARGS=(--comm.backend=links --comm.algorithm=ring --links.topology=grid --links.planes=1 --links.sats_per_plane=2
  --links.fixed_latency_ms=2 --comm.bucket_mb=0.01 --train.steps=200 --checkpoint.every_steps=10)
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=whole "${CUT_ARGS[@]}" > "$WORK/whole.log" 2>&1 \
  || { cat "$WORK/whole.log"; fail "uninterrupted links run failed"; }
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=power "${CUT_ARGS[@]}" > "$WORK/power1.log" 2>&1 &
JOB=$!
for _ in $(seq 1 300); do [[ -e "$WORK/runs/power/checkpoints/ckpt-00000020.h5" ]] && break; sleep 0.05; done
pkill -9 -f "$(basename "$TRAIN_BIN").*run.name=power" || { cat "$WORK/power1.log"; fail "no rank to cut (the run ended first?)"; }
wait $JOB 2>/dev/null
"${MPI[@]}" -np 2 "$TRAIN_BIN" "$WORK/base.toml" --run.name=power "${CUT_ARGS[@]}" > "$WORK/power2.log" 2>&1 \
  || { cat "$WORK/power2.log"; fail "the restart after the power cut failed"; }
# A real cut: the restart resumes mid-run (a run that had finished would resume at step 200).
RESUMED=$(grep -o 'resumed from step [0-9]*' "$WORK/power2.log" | grep -o '[0-9]*$')
[[ -n $RESUMED ]] && ((RESUMED >= 20 && RESUMED < 200)) \
  || { cat "$WORK/power2.log"; fail "the restart resumed from step '${RESUMED}', not mid-run (20 to 190)"; }
w=$(final_loss "$WORK/runs/whole/metrics.jsonl") r=$(final_loss "$WORK/runs/power/metrics.jsonl")
[[ "$w" == "$r" ]] || fail "after the power cut the final loss is $r, the uninterrupted run's $w"
echo "power cut over the links: $(grep -o 'resumed from step [0-9]*' "$WORK/power2.log"), final loss $r (uninterrupted $w)"

echo "links e2e: OK (loss mpi $a, links $b, links with bf16 gradients $c, links with buckets $d)"
