#!/usr/bin/env bash
# End-to-end: the eclipse checkpoint against slow storage. The orbit clock (orbit.json) puts the
# satellite 300 mission s (3 s wall at time scale 100) before a shadow entry, inside a 400 s margin,
# and every checkpoint commit takes 5 s longer (fault plan checkpoint_delay): the eclipse checkpoint
# is durable only inside the shadow. perigee-train must say so and checkpoint earlier from then on.
# Orbit keys out of range exit 2 naming the key.
#   eclipse_e2e.sh <perigee-data> <perigee-train>
set -uo pipefail
DATA_BIN=$1 TRAIN_BIN=$2
WORK=$(mktemp -d /tmp/perigee_eclipse.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_make_tokens "$DATA_BIN" "$WORK"
e2e_micro_toml "$WORK" 4 eclipse
cat >> "$WORK/tiny.toml" <<TOML
[checkpoint]
dir = "$WORK/ck"
[orbit]
eclipse = "checkpoint"
time_scale = 100.0
margin_s = 400.0
TOML
echo "checkpoint_delay 5" > "$WORK/slow.plan"
mkdir "$WORK/ck"
# 550 km, beta 0, phase 0: the first shadow entry is 1801.15 mission s after the epoch.
python3 - "$WORK/ck/orbit.json" <<'PY'
import json, sys, time
entry = 1801.15
json.dump({"epoch_unix": time.time() - (entry - 300.0) / 100.0, "altitude_km": 550.0, "beta_deg": 0.0,
           "phase_deg": 0.0, "time_scale": 100.0}, open(sys.argv[1], "w"))
PY
"$TRAIN_BIN" "$WORK/tiny.toml" --fault.plan="$WORK/slow.plan" > "$WORK/late.log" 2>&1 \
  || { cat "$WORK/late.log"; fail "the run with slow storage failed"; }
grep -q "orbit clock: continued from" "$WORK/late.log" || { cat "$WORK/late.log"; fail "the orbit clock did not continue"; }
grep -q "checkpoint before the power drops" "$WORK/late.log" || { cat "$WORK/late.log"; fail "no eclipse checkpoint"; }
grep -q "mission s after the shadow entry" "$WORK/late.log" \
  || { cat "$WORK/late.log"; fail "no warning that the eclipse checkpoint ended inside the shadow"; }
grep -q "the next ones start [0-9.]* s before the shadow entry" "$WORK/late.log" \
  || { cat "$WORK/late.log"; fail "the margin did not grow"; }
[[ -f $WORK/ck/ckpt-00000000.h5 ]] || fail "the eclipse checkpoint (step 0) is missing"
echo "ok: $(grep -m1 "after the shadow entry" "$WORK/late.log" | sed 's/.*orbit: //' | cut -c1-150)"

expect_error() {  # expect_error <pattern> <args...>: exit 2 and the pattern in the output
  local pattern=$1
  shift
  "$TRAIN_BIN" "$WORK/tiny.toml" "$@" > "$WORK/err.log" 2>&1
  local rc=$?
  [[ $rc -eq 2 ]] && grep -q -- "$pattern" "$WORK/err.log" || { cat "$WORK/err.log"; fail "$* -> exit $rc"; }
  echo "ok: $* -> $(grep -m1 -- "$pattern" "$WORK/err.log" | cut -c1-150)"
}
expect_error "\[orbit\] time_scale: must be in (0, 10000\]" --orbit.time_scale=1e5
expect_error "\[orbit\] altitude_km: must be in \[100, 1e+05\] (got 50)" --orbit.altitude_km=50
expect_error "margin_s = 4000 s is not shorter than the sunlit part" --orbit.margin_s=4000 --run.name=m
