#!/usr/bin/env bash
# On the CPU machine: download the Debian runtime packages the GPU machine lacks (it has no apt) into
# device/debs/ (git-ignored), to carry there with the build folder:
#   scripts/device/fetch_debs.sh && <device run, carry: build, device/debs> scripts/device/run_on_device.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/device/debs"
mkdir -p "$OUT"
cd "$OUT"
PKGS=(openmpi-bin openmpi-common libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2
      libmunge2 libnl-3-200 libnl-route-3-200 libfabric1 libucx0 libibverbs1 librdmacm1 libpsm2-2
      libpsm-infinipath1 libxnvctrl0 libhdf5-103-1 libsz2 libaec0 libopenblas0 libopenblas0-pthread
      libgfortran5 libgomp1 libtomlplusplus3)
for p in "${PKGS[@]}"; do
  ls "${p}"_*.deb > /dev/null 2>&1 || apt-get download "$p" > /dev/null 2>&1 || echo "warning: no package $p"
done
du -sh "$OUT"
