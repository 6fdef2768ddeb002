#!/usr/bin/env bash
# CTest smoke test of perigee-bench: 4 ranks, 2 sizes, 2 algorithms on one Starlink plane, in
# float and in bfloat16; passes when the bench exits 0 and its JSON reports no wrong element in any
# row, with the row's type.
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
