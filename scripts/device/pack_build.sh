#!/usr/bin/env bash
# On the CPU machine: pack a built tree for the GPU machine (carry limit 64 MiB). Writes
# device/build.txz (the build folder's CTest files and stripped executables, no objects or static
# libraries; xz: about 15 MB where gzip took 40 MB), device/anchors/torch_gpt2.py (the PyTorch
# anchor) and the Debian runtime packages (fetch_debs.sh, about 20 MB) into device/, which is
# git-ignored: carry ["device"]. Fails when device/ would not fit the carry limit.
#   scripts/device/pack_build.sh [BUILD_DIR]     # builds BUILD_DIR (default build/) first
# On the GPU machine (run_on_device.sh unpacks device/build.txz into build/ first):
#   scripts/device/run_on_device.sh                                        # whole ctest suite
#   scripts/device/run_on_device.sh -- \
#     env BUILD=$PWD/build ANCHOR=$PWD/device/anchors/torch_gpt2.py scripts/device/run_gpu_bench.sh --require-gpu
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

# Never pack stale binaries: bring the build up to date first, and record the commit it is of.
cmake --build "$BUILD" -j"$(nproc)"
bash "$ROOT/scripts/device/fetch_debs.sh" > /dev/null
mkdir -p "$ROOT/device/anchors"
for a in "$ROOT/shared/anchors/torch_gpt2.py" "$ROOT/../shared/anchors/torch_gpt2.py"; do
  [[ -f "$a" ]] && { cp "$a" "$ROOT/device/anchors/"; break; }
done

# Everything but build products the tests never read (objects, archives, make/ninja state).
(cd "$BUILD" && find . -type f \
   ! -path '*/CMakeFiles/*' ! -name '*.o' ! -name '*.a' ! -name 'Makefile' ! -name '*.ninja' \
   ! -name 'cmake_install.cmake' ! -path './Testing/*' ! -path './carry/*' -print0 |
   tar cf - --null -T -) | (mkdir -p "$STAGE/build" && tar xf - -C "$STAGE/build")
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
[[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2> /dev/null)" ]] && COMMIT="$COMMIT + uncommitted changes"
echo "$COMMIT, packed $(date -u +%FT%TZ)" > "$STAGE/build/.source_commit"
find "$STAGE/build" -type f -perm -u+x -exec sh -c \
  'file -b "$1" | grep -q ELF && strip --strip-unneeded "$1"' _ {} \;
rm -f "$ROOT/device/build.tgz"
tar cf - -C "$STAGE" build | xz -6 -T2 > "$ROOT/device/build.txz"
BYTES=$(du -sb "$ROOT/device" | cut -f1)
LIMIT=$((64 * 1024 * 1024))
echo "device/build.txz: $(du -sh "$ROOT/device/build.txz" | cut -f1); device/ in all: $BYTES bytes of $LIMIT"
if ((BYTES > LIMIT)); then
  echo "error: device/ is over the 64 MiB carry limit" >&2
  exit 1
fi
echo "carry [\"device\"]; on the GPU machine: scripts/device/run_on_device.sh"
