#!/usr/bin/env bash
# The topology benchmark suite (issue 7): installs what is missing, builds perigee-bench, runs the
# issue7 suite (Starlink plane, 8x8 +Grid, Starlink shell 1, tight cluster, file graph) on 8 MPI
# ranks over emulated laser links, and writes results/topology/: suite.txt (nccl-tests-style
# table), suite.json, one PNG per topology plus meas_over_pred.png, and astra-sim/ (ASTRA-sim
# network and system files per topology and algorithm). About 3-4 minutes on 2 cores.
#   scripts/topology_suite.sh                    # defaults below
#   scripts/topology_suite.sh -n 5 -e 4M          # any perigee-bench option (later ones win)
#   RANKS=4 OUT=/tmp/topo scripts/topology_suite.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RANKS="${RANKS:-8}"
OUT="${OUT:-$PERIGEE_ROOT/results/topology}"

bash "$PERIGEE_ROOT/scripts/install_deps.sh"
cmake -S "$PERIGEE_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" --target perigee-bench -j "$JOBS"

rm -rf "$OUT"
mkdir -p "$OUT"
# Sizes 64 B .. 2 MB (x8): the time scale keeps each largest all-reduce >= 3x its real copy time on
# this machine (bench/topology/time_scale.hpp), and the suite within a few minutes on 2 cores.
mpirun -np "$RANKS" "${MPIRUN_FLAGS[@]}" "$BUILD_DIR/bench/topology/perigee-bench" --suite issue7 \
  -b 64 -e 2M -f 8 -w 1 -n 2 --json "$OUT/suite.json" --astra-sim "$OUT/astra-sim" "$@" | tee "$OUT/suite.txt"

# Debian's python3 has python3-matplotlib; a python3 earlier on PATH (pyenv, venv) may not.
PYTHON=python3
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; fi
"$PYTHON" "$PERIGEE_ROOT/bench/topology/plot_topology.py" "$OUT/suite.json" --out-dir "$OUT" > /dev/null

echo
echo "[topology] results in $OUT:"
echo "  table:     $OUT/suite.txt"
echo "  JSON:      $OUT/suite.json"
echo "  plots:     $(cd "$OUT" && ls *.png | tr '\n' ' ')"
echo "  ASTRA-sim: $OUT/astra-sim/ ($(ls "$OUT/astra-sim" 2>/dev/null | wc -l) files)"
