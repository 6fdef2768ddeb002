#!/usr/bin/env bash
# What `cmake --install` and `cpack -G DEB` ship (cmake/install.cmake, docs/deploy.md), used as a node
# image uses it: from a folder that holds no source tree, the installed programs must load, report
# their version, train on 2 MPI ranks under the installed perigee-run, verify its checkpoints, and run
# perigee-bench on the installed example graph, also after the install folder moved. Then the Debian
# package: its Depends, its files, and its programs, unpacked, training again.
#   install_test.sh <build dir> <version> <mpiexec>
set -uo pipefail
BUILD=$1 VERSION=$2 MPIEXEC=$3
WORK=$(mktemp -d /tmp/perigee_install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
e2e_mpi_flags "$MPIEXEC"
TOOLS=(perigee-train perigee-run perigee-ckpt perigee-data perigee-bench)
BENCHES=(bench_train_step bench_overlap bench_checkpoint bench_abft bench_fault_campaign bench_kernels)

# check_tree <prefix> <libexec dir>: every file in place, every program loading all its libraries.
check_tree() {
  local prefix=$1 libexec=$2 f out
  for f in "${TOOLS[@]/#/bin/}" "${BENCHES[@]/#/$libexec/}"; do
    [[ -x $prefix/$f ]] || fail "$prefix/$f is missing or not executable"
    out=$(ldd "$prefix/$f" 2>&1)
    grep -q "not found" <<< "$out" && fail "$f: a library is not found: $(grep "not found" <<< "$out")"
  done
  for f in share/perigee/configs/demo.toml share/perigee/configs/default.toml \
    share/perigee/topology/example_graph.txt share/doc/perigee/README.md share/doc/perigee/docs/deploy.md; do
    [[ -s $prefix/$f ]] || fail "$prefix/$f is missing"
  done
  for f in "${TOOLS[@]}"; do
    out=$("$prefix/bin/$f" --version 2>&1) || fail "$f --version exited $?: $out"
    [[ $out == "$f $VERSION (CUDA architectures "* ]] || fail "$f --version printed '$out'"
  done
  echo "ok: $prefix: ${#TOOLS[@]} programs and ${#BENCHES[@]} benchmarks load, configs and docs in place"
}

# train_with <bin dir> <name>: 4 steps on 2 ranks under the installed supervisor, from $WORK/job (no
# source tree there), on the installed demo config made tiny by overrides; then verify the checkpoints.
train_with() {
  local bin=$1 name=$2 config=$3
  (
    cd "$WORK/job" || exit 1
    "$bin/perigee-run" --np 2 --max-restarts 0 --mpirun "$MPIEXEC" "$config" --device.device=cpu \
      --device.threads=1 --model.n_layer=1 --model.n_head=2 --model.n_embd=16 --model.context=16 \
      --train.batch_size=4 --train.seq_len=16 --train.steps=4 --train.val_every=2 --train.sample_tokens=8 \
      --data.train_file=tok_train.bin --data.val_file=tok_val.bin --checkpoint.every_steps=2 \
      --run.name="$name"
  ) > "$WORK/$name.log" 2>&1 || { tail -30 "$WORK/$name.log"; fail "training with $bin failed"; }
  "$bin/perigee-ckpt" verify "$WORK/job/runs/$name/checkpoints" > "$WORK/$name.verify" 2>&1 \
    || { cat "$WORK/$name.verify"; fail "$bin/perigee-ckpt verify failed"; }
  grep -q "OK: 2 checkpoint(s), 0 failed" "$WORK/$name.verify" || fail "verify said: $(cat "$WORK/$name.verify")"
  echo "ok: $bin: 2 ranks trained 4 steps under perigee-run, 2 checkpoints verify"
}

# bench_graph <prefix>: perigee-bench's default "file" topology is the installed graph.
bench_graph() {
  local prefix=$1 out
  out=$(cd "$WORK/job" && "${MPI[@]}" -np 2 "$prefix/bin/perigee-bench" --topology file -b 8 -e 16 -w 0 -n 1 2>&1) \
    || { echo "$out" | tail -20; fail "$prefix/bin/perigee-bench failed"; }
  grep -q "topology file: file $prefix/share/perigee/topology/example_graph.txt" <<< "$out" \
    || fail "perigee-bench did not read $prefix's graph: $(grep -m1 "topology file" <<< "$out")"
  echo "ok: $prefix/bin/perigee-bench read $prefix/share/perigee/topology/example_graph.txt"
}

# A carried build (scripts/device/pack_build.sh leaves out the install scripts) cannot install: skip.
if [[ ! -f $BUILD/cmake_install.cmake ]]; then
  echo "skipped: $BUILD has no cmake_install.cmake (a carried build)"
  exit 77
fi

# ---- cmake --install
mkdir -p "$WORK/job"
cmake --install "$BUILD" --prefix "$WORK/prefix" > "$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "cmake --install failed"; }
check_tree "$WORK/prefix" libexec/perigee
e2e_make_tokens "$WORK/prefix/bin/perigee-data" "$WORK/job"
train_with "$WORK/prefix/bin" installed "$WORK/prefix/share/perigee/configs/demo.toml"
grep -q "perigee-train $VERSION: 2 rank(s)" "$WORK/installed.log" || fail "no perigee-train start line in the supervised log"
bench_graph "$WORK/prefix"
mv "$WORK/prefix" "$WORK/moved"  # nothing in the tree names its own folder
bench_graph "$WORK/moved"

# ---- the Debian package (its tools are Debian's dpkg-dev, which build-essential brings; a machine
# without them, such as the GPU machine the device tool lends, checks the install tree only)
if ! command -v dpkg-shlibdeps > /dev/null || ! command -v dpkg-deb > /dev/null; then
  echo "skipped: the Debian package (no dpkg-shlibdeps or dpkg-deb here)"
  echo "PASS"
  exit 0
fi
(cd "$BUILD" && cpack -G DEB -B "$WORK/pkg") > "$WORK/cpack.log" 2>&1 || { tail -30 "$WORK/cpack.log"; fail "cpack failed"; }
DEB=$WORK/pkg/perigee_${VERSION}_$(dpkg --print-architecture).deb
[[ -f $DEB ]] || fail "no $DEB: $(ls "$WORK/pkg")"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for p in openmpi-bin libopenmpi3 libhdf5-103-1 libopenblas0 libtomlplusplus3 libstdc++6; do
  grep -q "\(^\|, \)$p\( \|,\|$\)" <<< "$DEPENDS" || fail "Depends lacks $p: $DEPENDS"
done
echo "ok: $(basename "$DEB") Depends: $DEPENDS"
dpkg-deb -x "$DEB" "$WORK/root" || fail "dpkg-deb -x failed"
check_tree "$WORK/root/usr" libexec/perigee
train_with "$WORK/root/usr/bin" packaged "$WORK/root/usr/share/perigee/configs/demo.toml"
echo "PASS"
