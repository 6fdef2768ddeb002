// GoogleTest main for tests that run under mpiexec: MPI is initialised once, only rank 0 prints,
// and the exit code is the same on every rank (failed anywhere = failed everywhere).
#include <gtest/gtest.h>
#include <mpi.h>

#include "collectives/mpi_init.hpp"

int main(int argc, char** argv) {
  perigee::collectives::init_mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&local_failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (local_failed && rank != 0) {
    std::fprintf(stderr, "[rank %d] tests FAILED on this rank\n", rank);
  }
  MPI_Finalize();
  return any_failed;
}
