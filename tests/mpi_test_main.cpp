// GoogleTest main for tests that run under mpiexec: MPI is initialised once, rank 0 prints the usual
// report and the other ranks their failures only, and the exit code is the same on every rank (failed
// anywhere = failed everywhere).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

#include "collectives/mpi_init.hpp"

namespace {

// The other ranks print only their failures, each with its rank and test, so a failure that happens
// on rank 1 alone says what it was.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  // The test's name is kept here: UnitTest::current_test_info() would take the lock that gtest holds
  // while it reports a part result (a deadlock).
  void OnTestStart(const ::testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s: %s:%d: failure\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.message());
  }

 private:
  int rank_;
  std::string test_;
};

}  // namespace

int main(int argc, char** argv) {
  perigee::collectives::init_mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
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
