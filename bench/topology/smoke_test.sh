#!/usr/bin/env bash
# CTest smoke test of perigee-bench: 4 ranks, 2 sizes, 2 algorithms on one Starlink plane, in
# float and in bfloat16; passes when the bench exits 0 and its JSON reports no wrong element in any
# row, with the row's type; then bad inputs on 1 rank: each must exit 2 before any run, with one
# error line that names the option, and a run where every algorithm is skipped must exit 1.
#   smoke_test.sh <mpiexec> <perigee-bench> <out.json>
set -euo pipefail
MPIEXEC="$1"; BENCH="$2"; JSON="$3"
for TYPE in float bfloat16; do
  OUT="${JSON%.json}.$TYPE.json"
  rm -f "$OUT"
  "$MPIEXEC" --oversubscribe --allow-run-as-root --bind-to none -n 4 "$BENCH" \
    --topology starlink_plane --mapping spread --algorithms ring,rabenseifner -d "$TYPE" \
    -b 4K -e 64K -f 16 -w 1 -n 2 --target-wall-s 0.05 --json "$OUT"
  python3 - "$OUT" "$TYPE" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
rows = [(a["algorithm"], r) for t in doc["topologies"] for a in t["algorithms"] if not a["skipped"] for r in a["rows"]]
assert len(rows) == 4, f"expected 2 algorithms x 2 sizes, got {len(rows)} rows"
bad = [(alg, r["size"]) for alg, r in rows if r["out_of_place"]["nwrong"] != 0 or r["in_place"]["nwrong"] != 0]
assert not bad, f"#wrong != 0 in {bad}"
types = {r["type"] for _, r in rows}
assert types == {sys.argv[2]}, f"rows of type {types}, expected {sys.argv[2]}"
print(f"smoke ({sys.argv[2]}): {len(rows)} rows, #wrong = 0")
PY
done

# expect_fail <status> <text the error must contain> <perigee-bench arguments...>: run as an MPI
# singleton (no launcher: mpiexec takes ~2 s to tear down a job that exited non-zero); with
# NP=<ranks> set, through mpiexec on that many ranks.
expect_fail() {
  local want="$1" text="$2" rc=0 err
  shift 2
  local launch=()
  if [[ -n "${NP:-}" ]]; then launch=("$MPIEXEC" --oversubscribe --allow-run-as-root --bind-to none -n "$NP"); fi
  err=$("${launch[@]}" "$BENCH" --topology starlink_plane -n 1 -w 0 "$@" 2>&1 >/dev/null) || rc=$?
  if [[ "$rc" != "$want" || "$err" != *"$text"* ]]; then
    echo "smoke: '$*' exited $rc (expected $want) with: $err" >&2
    exit 1
  fi
}
expect_fail 2 "--latency-ms: expected a finite number >= 0, got 'abc'" -b 8 -e 64 --latency-ms abc
expect_fail 2 "--minbytes: bad size '-8'" -b -8 -e 64
expect_fail 2 "--maxbytes: size '99999999999999G' too large" -b 8 -e 99999999999999G
expect_fail 2 "--maxbytes: size '2048G' too large" -b 8 -e 2048G
expect_fail 2 "--t0-s: expected a finite number, got 'nan'" -b 8 -e 64 --t0-s nan
expect_fail 2 "--timeout-s: expected a finite number >= 0, got '-1'" -b 8 -e 64 --timeout-s -1
expect_fail 2 "--target-wall-s: expected a finite number > 0, got 'nan'" -b 8 -e 64 --target-wall-s nan
expect_fail 2 "--overhead-us: expected a finite number >= 0" -b 8 -e 64 --overhead-us -1000
expect_fail 2 "--real-margin: expected a finite number >= 0" -b 8 -e 64 --real-margin -3
expect_fail 2 "--bandwidth-gbps: expected a finite number > 0, got '0'" -b 8 -e 64 --bandwidth-gbps 0
expect_fail 2 "--time-scale: expected auto or a finite number > 0, got '1abc'" -b 8 -e 64 --time-scale 1abc
expect_fail 2 "--planes: --topology starlink_plane fixes it (it applies to walker_delta, walker_star, grid)" \
  -b 8 -e 64 --planes 3
# Through the launcher on 2 ranks: rank 0's verdict reaches the other rank, and both exit.
NP=2 expect_fail 2 "--json: folder /nonexistent-perigee/dir does not exist" -b 8 -e 64 \
  --json /nonexistent-perigee/dir/x.json
NP=2 expect_fail 1 "no algorithm ran" -b 8 -e 64 --algorithms hierarchical
echo "smoke: bad inputs rejected"
