#!/usr/bin/env bash
# Installs what is missing (apt-get), builds Perigee (Release, CUDA compiled for sm_90) and runs
# the whole test suite with CTest. GPU tests skip cleanly where there is no GPU.
#   scripts/test.sh            # everything
#   scripts/test.sh -L mpi     # extra arguments go to ctest
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$PERIGEE_ROOT/scripts/install_deps.sh"
perigee_build
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900 -j "$JOBS" "$@"
