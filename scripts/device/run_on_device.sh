#!/usr/bin/env bash
# On the GPU machine (no apt): unpack the carried Debian runtime packages into device/root (never
# into /), point MPI and the loader at them and at the machine's own CUDA libraries (its Python
# nvidia-* packages), unpack the carried build (device/build.txz from pack_build.sh) into build/ when
# there is none, then run the test suite from it, and optionally more.
#   scripts/device/run_on_device.sh                 # whole ctest suite
#   scripts/device/run_on_device.sh -- <command>    # any command in the same environment
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The machine keeps build/ between calls: unpack again whenever the carried archive changed (its
# checksum is kept in build/.carried), so a new pack never meets the binaries of the last one.
if [[ -f "$ROOT/device/build.txz" ]]; then
  SUM=$(sha256sum "$ROOT/device/build.txz" | cut -d' ' -f1)
  if [[ "$(cat "$ROOT/build/.carried" 2> /dev/null)" != "$SUM" ]]; then
    rm -rf "$ROOT/build"
    if command -v xz > /dev/null; then
      tar xJf "$ROOT/device/build.txz" -C "$ROOT"
    else  # Python's tarfile where the machine has no xz program
      python3 - "$ROOT/device/build.txz" "$ROOT" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    try:
        t.extractall(sys.argv[2], filter="tar")
    except TypeError:  # a Python without extraction filters
        t.extractall(sys.argv[2])
PY
    fi
    echo "$SUM" > "$ROOT/build/.carried"
  fi
fi
[[ -f "$ROOT/build/.source_commit" ]] && echo "# carried build of $(cat "$ROOT/build/.source_commit")"
DEV="$ROOT/device/root"
mkdir -p "$DEV"
# The machine's own library path, for programs that must not see the carried Debian libraries
# (run_gpu_bench.sh runs PyTorch with it).
export PERIGEE_HOST_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
for deb in "$ROOT"/device/debs/*.deb; do dpkg -x "$deb" "$DEV"; done
export OPAL_PREFIX="$DEV/usr"
export PATH="$DEV/usr/bin:$PATH"
ln -sf mpiexec.openmpi "$DEV/usr/bin/mpiexec"
NV_LIBS=$(python3 - <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages():
    for lib in glob.glob(os.path.join(base, "nvidia", "*", "lib")):
        dirs.add(lib)
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$DEV/usr/lib/x86_64-linux-gnu:$DEV/usr/lib/x86_64-linux-gnu/openmpi/lib:$DEV/usr/lib/x86_64-linux-gnu/pmix2/lib:$DEV/lib/x86_64-linux-gnu:$DEV/usr/lib/x86_64-linux-gnu/openblas-pthread:${NV_LIBS}:${LD_LIBRARY_PATH:-}"
# A shared-library build (see fetch_debs.sh): its RPATHs name the CPU machine's folders.
BUILD_LIBS=$(find "$ROOT/build" -name 'libperigee_*.so' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
[[ -n "$BUILD_LIBS" ]] && export LD_LIBRARY_PATH="$BUILD_LIBS:$LD_LIBRARY_PATH"
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_mtl='^ofi,psm,psm2'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# The build folder was configured on the CPU machine: rewrite its absolute paths to this copy (the
# CTest files and the gtest lists they include: *_include.cmake, *_tests.cmake). Tests that read the
# source tree take it from PERIGEE_SOURCE_DIR.
OLD_ROOT=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$ROOT/build/CMakeCache.txt")
if [[ -n "$OLD_ROOT" && "$OLD_ROOT" != "$ROOT" ]]; then
  { grep -rl --include='*.cmake' "$OLD_ROOT" "$ROOT/build" || true; } | xargs -r sed -i "s#$OLD_ROOT#$ROOT#g"
  sed -i "s#$OLD_ROOT#$ROOT#g" "$ROOT/build/CMakeCache.txt"
fi
export PERIGEE_SOURCE_DIR="$ROOT"
# mpiexec in the tests points at /usr/bin/mpiexec on the CPU machine; use the unpacked one.
{ grep -rl --include=CTestTestfile.cmake '"/usr/bin/mpiexec"' "$ROOT/build" || true; } |
  xargs -r sed -i "s#\"/usr/bin/mpiexec\"#\"$DEV/usr/bin/mpiexec.openmpi\"#g"

if [[ "${1:-}" == "--" ]]; then
  shift
  exec "$@"
fi
cd "$ROOT/build"
ctest --output-on-failure -j 8 --timeout 600 2>&1 | tee "${OUT:-/tmp}/ctest.log" | tail -40
