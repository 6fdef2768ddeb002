#!/usr/bin/env bash
# Installs the Debian packages Perigee builds and runs with, if any is missing.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (no-op when all present).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev
  libopenmpi-dev openmpi-bin
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libbenchmark-dev
  fortunes
  hdf5-tools python3-h5py libhdf5-dev
  python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "[install] installing: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[install] all packages present"
fi

if ! command -v nvcc >/dev/null 2>&1 && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "[install] error: nvcc not found. Perigee compiles its CUDA code in every build;" >&2
  echo "          install the CUDA Toolkit (>= 12) so that /usr/local/cuda/bin/nvcc exists." >&2
  exit 1
fi
