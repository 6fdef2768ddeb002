# `cmake --install` and `cpack -G DEB`: the programs, benchmarks, configs and docs an orbital node image
# or a cluster install needs (docs/deploy.md). Included last by the top-level CMakeLists.txt.
#
#   <prefix>/bin/                     perigee-train, perigee-run, perigee-ckpt, perigee-data, perigee-bench
#   <prefix>/libexec/perigee/         bench_train_step, bench_overlap, bench_checkpoint, bench_abft,
#                                     bench_fault_campaign, bench_kernels
#   <prefix>/share/perigee/configs/   default.toml, demo.toml
#   <prefix>/share/perigee/topology/  example_graph.txt (perigee-bench's "file" topology)
#   <prefix>/share/doc/perigee/       README.md, docs/*.md and their figures
#
# The project's libraries are static, so nothing but these files is installed. The programs keep the
# link directories of the libraries outside the system's (HDF5's, Open MPI's and the CUDA Toolkit's) in
# their RUNPATH (CMAKE_INSTALL_RPATH_USE_LINK_PATH, set before the targets).

install(TARGETS perigee-train perigee-run perigee-ckpt perigee-data RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES configs/default.toml configs/demo.toml DESTINATION ${CMAKE_INSTALL_DATADIR}/perigee/configs)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs FILES_MATCHING PATTERN "*.md" PATTERN "*.png"
        PATTERN "*.svg")
if(PERIGEE_BUILD_BENCH)
  install(TARGETS perigee-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES bench/topology/example_graph.txt DESTINATION ${CMAKE_INSTALL_DATADIR}/perigee/topology)
  install(TARGETS bench_train_step bench_overlap bench_checkpoint bench_abft bench_fault_campaign bench_kernels
          RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/perigee)
endif()

# ---- Debian package (cpack -G DEB in the build folder)
set(CPACK_PACKAGE_NAME perigee)
set(CPACK_PACKAGE_VENDOR "Perigee")
set(CPACK_PACKAGE_CONTACT "Perigee engineers <perigee@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "data-parallel GPT training for GPUs in orbit (CUDA, NCCL, MPI, HDF5)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# Depends: the Debian libraries the programs load, found by dpkg-shlibdeps, and mpirun. The CUDA
# runtime, cuBLAS and NCCL come from the CUDA Toolkit (NVIDIA's packages or its installer), which no
# Debian package provides: dpkg-shlibdeps skips them (docs/deploy.md says what a node needs).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "openmpi-bin")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "hdf5-tools, python3-h5py, fortunes")
set(CPACK_GENERATOR DEB)
include(CPack)
