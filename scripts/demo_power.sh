#!/usr/bin/env bash
# Power-cut demo: the small GPT trains on 4 ranks under the supervisor (perigee-run) through
# compressed orbits (one 95.6-min orbit in about 24 s): a checkpoint right before each shadow
# entry, compute paused in the shadow, and a real `kill -9` of one rank in the middle of the run.
# The supervisor relaunches the job, which resumes bit-exactly from the newest good checkpoint.
#   scripts/demo_power.sh            # RANKS=2 scripts/demo_power.sh for fewer ranks
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RANKS="${RANKS:-4}"
RUN_NAME="power-$(date +%Y%m%d-%H%M%S)"

bash "$PERIGEE_ROOT/scripts/install_deps.sh"
perigee_build
cd "$PERIGEE_ROOT"
bash scripts/build_data.sh "$BUILD_DIR/tools/perigee-data"

# The kill: 25 s in, one perigee-train rank of this run gets SIGKILL (a power cut without warning).
(
  sleep 25
  victim=$(pgrep -f "perigee-train.*--run.name=$RUN_NAME" | tail -n 1 || true)
  if [[ -n "$victim" ]]; then
    echo ">>> demo: kill -9 rank process $victim (power cut)"
    kill -9 "$victim"
  fi
) &
killer=$!
trap 'kill $killer 2>/dev/null || true' EXIT

"$BUILD_DIR/tools/perigee-run" --np "$RANKS" --backoff 1 configs/demo.toml \
  --run.name="$RUN_NAME" --train.steps=400 --train.log_every=25 --train.val_every=200 \
  --checkpoint.every_steps=50 --orbit.eclipse=pause --orbit.time_scale=240 --orbit.phase_deg=60 \
  --comm.timeout_s=10 "$@"
echo ">>> demo: checkpoints of runs/$RUN_NAME:"
"$BUILD_DIR/tools/perigee-ckpt" verify "runs/$RUN_NAME/checkpoints"
