#!/usr/bin/env bash
# On the CPU machine: download the Debian runtime packages the GPU machine lacks (it has no apt) into
# device/debs/ (git-ignored), to carry there with the build folder:
#   scripts/device/fetch_debs.sh && <device run, carry: build, device/debs> scripts/device/run_on_device.sh
# Size: the carry limit is 64 MiB. These packages are about 20 MB; the default static build folder
# is about 85 MB (each test binary links every library), too much: build for the device with shared
# libraries and strip it (36 MB, the 232 non-e2e tests pass that way on the CPU machine), e.g.
#   cmake -S . -B build -DBUILD_SHARED_LIBS=ON && cmake --build build -j
#   find build -type f -perm -u+x -exec sh -c 'file -b "$1" | grep -q ELF && strip --strip-unneeded "$1"' _ {} \;
#   find build \( -name '*.o' -o -name '*.a' \) -delete
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/device/debs"
mkdir -p "$OUT"
cd "$OUT"
PKGS=(openmpi-bin openmpi-common libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2
      libmunge2 libnl-3-200 libnl-route-3-200 libfabric1 libucx0 libibverbs1 librdmacm1 libpsm2-2
      libpsm-infinipath1 libxnvctrl0 libhdf5-103-1 libsz2 libaec0 libopenblas0 libopenblas0-pthread
      libgfortran5 libgomp1 libtomlplusplus3
      # Debian's HDF5 links libcurl.so.4 (ROS3 driver; package libcurl4) and, through it, these:
      libcurl4 libnghttp2-14 librtmp1 libssh2-1 libpsl5 libldap-2.5-0 libgssapi-krb5-2 libkrb5-3
      libk5crypto3 libkrb5support0 libkeyutils1 libsasl2-2 libbrotli1 libgnutls30 libidn2-0 libunistring2
      libtasn1-6 libnettle8 libhogweed6 libp11-kit0 libffi8 libgmp10)
for p in "${PKGS[@]}"; do
  ls "${p}"_*.deb > /dev/null 2>&1 || apt-get download "$p" > /dev/null 2>&1 || echo "warning: no package $p"
done
du -sh "$OUT"
