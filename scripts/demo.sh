#!/usr/bin/env bash
# The main job: installs what is missing, builds Perigee, builds the fortunes dataset and trains a
# small GPT with 4 data-parallel MPI ranks (CPU by default; device = "auto" uses a GPU when this
# build has a GPU backend and a device answers). Shows the loss falling and a text sample.
#   scripts/demo.sh                          # defaults from configs/demo.toml
#   scripts/demo.sh --train.steps=50         # any config override
#   RANKS=2 scripts/demo.sh                  # another rank count
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RANKS="${RANKS:-4}"

bash "$PERIGEE_ROOT/scripts/install_deps.sh"
perigee_build
cd "$PERIGEE_ROOT"
bash scripts/build_data.sh "$BUILD_DIR/tools/perigee-data"
# One thread per rank unless the machine has cores to spare (the trainer splits them itself).
exec mpirun -np "$RANKS" "${MPIRUN_FLAGS[@]}" "$BUILD_DIR/tools/perigee-train" configs/demo.toml "$@"
