# Shared by scripts/*.sh: build folder, parallelism and mpirun flags. Source it, don't run it.
PERIGEE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$PERIGEE_ROOT/build}"
JOBS="${JOBS:-$(nproc)}"

# mpirun flags: oversubscribe (more ranks than cores is fine for the demo), root allowed when root,
# shared-memory transport only (one machine).
MPIRUN_FLAGS=(--oversubscribe --bind-to none --mca btl self,vader)
if [[ $(id -u) -eq 0 ]]; then MPIRUN_FLAGS+=(--allow-run-as-root); fi

perigee_build() {
  cmake -S "$PERIGEE_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$BUILD_DIR" -j "$JOBS"
}
