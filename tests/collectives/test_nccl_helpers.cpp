// The NcclCommunicator's pure helpers, everywhere (no MPI, no GPU): the shared-GPU verdict
// (check_distinct_gpus), nccl_status and PERIGEE_CHECK_NCCL, the rank whose failure create() reports
// (cause_rank) and the NCCL_COMM_BLOCKING check (check_nonblocking_env).
#include <gtest/gtest.h>
#include <nccl.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "collectives/nccl_communicator.hpp"

namespace perigee::collectives {
namespace {

GpuIdentity gpu(uint64_t host, const char* bus, int device = 0) {
  GpuIdentity g;
  g.host_hash = host;
  g.host_name = "host" + std::to_string(host);
  g.bus_id = bus;
  g.device = device;
  return g;
}

TEST(CheckDistinctGpus, DistinctGpusAndSameBusOnOtherHostsAreFine) {
  EXPECT_TRUE(check_distinct_gpus({gpu(1, "0000:18:00.0"), gpu(1, "0000:2a:00.0", 1)}).is_ok());
  EXPECT_TRUE(check_distinct_gpus({gpu(1, "0000:18:00.0"), gpu(2, "0000:18:00.0")}).is_ok());
  EXPECT_TRUE(check_distinct_gpus({gpu(1, "0000:18:00.0")}).is_ok());
}

TEST(CheckDistinctGpus, SharedGpuNamesTheRanksAndAdvisesStaging) {
  Status s = check_distinct_gpus({gpu(7, "0000:65:00.0"), gpu(7, "0000:65:00.0")});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("ranks 0 and 1 share GPU 0000:65:00.0 (CUDA device 0) on host host7"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("Duplicate GPU detected"), std::string::npos);
  EXPECT_NE(s.message().find("MPI backend with host staging"), std::string::npos);

  // Two groups on two hosts, one rank alone.
  s = check_distinct_gpus({gpu(1, "0000:18:00.0"), gpu(2, "0000:18:00.0"), gpu(1, "0000:18:00.0"),
                           gpu(2, "0000:18:00.0"), gpu(1, "0000:2a:00.0", 1), gpu(1, "0000:18:00.0")});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("ranks 0, 2 and 5 share GPU 0000:18:00.0"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("ranks 1 and 3 share GPU 0000:18:00.0"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("and 4"), std::string::npos);  // rank 4 has its own GPU
  EXPECT_EQ(s.message().find(", 4"), std::string::npos);
}

TEST(CheckDistinctGpus, SharingNeedsEveryRankToOptIn) {
  std::vector<GpuIdentity> ids = {gpu(1, "0000:18:00.0"), gpu(1, "0000:18:00.0")};
  ids[0].shared_gpu_opt_in = true;
  EXPECT_EQ(check_distinct_gpus(ids).code(), StatusCode::kUnavailable);
  ids[1].shared_gpu_opt_in = true;
  EXPECT_TRUE(check_distinct_gpus(ids).is_ok());
}

Status failing_nccl_call() {
  PERIGEE_CHECK_NCCL(ncclInvalidUsage);
  return Status::ok();
}

TEST(NcclStatus, CarriesNcclTextAndTrace) {
  EXPECT_TRUE(nccl_status(ncclSuccess, "ncclAllReduce").is_ok());
  Status s = nccl_status(ncclInvalidArgument, "ncclAllReduce");
  EXPECT_EQ(s.code(), StatusCode::kNcclError);
  EXPECT_NE(s.message().find("ncclAllReduce failed"), std::string::npos);
  EXPECT_NE(s.message().find(ncclGetErrorString(ncclInvalidArgument)), std::string::npos);
  Status t = failing_nccl_call();
  EXPECT_EQ(t.code(), StatusCode::kNcclError);
  EXPECT_NE(t.to_string().find("test_nccl_helpers.cpp"), std::string::npos) << t.to_string();
}

// The rank every rank reports when NCCL init fails: the first to fail (a peer's failure makes the
// others fail later, at their deadline or when they see it), the lowest on a tie.
TEST(NcclCauseRank, TheFirstRankToFailIsTheCause) {
  using O = StepOutcome;
  const O ok{StatusCode::kOk, 0.5};
  EXPECT_EQ(cause_rank({}), -1);
  EXPECT_EQ(cause_rank({ok, ok, ok}), -1);
  EXPECT_EQ(cause_rank({ok, O{StatusCode::kNcclError, 0.2}, ok}), 1);
  // Rank 3 fails at once; ranks 0 and 1 time out waiting for it.
  EXPECT_EQ(cause_rank({O{StatusCode::kUnavailable, 60.0}, O{StatusCode::kUnavailable, 60.1}, ok,
                        O{StatusCode::kNcclError, 0.01}}),
            3);
  EXPECT_EQ(cause_rank({ok, O{StatusCode::kNcclError, 1.0}, O{StatusCode::kInvalidArgument, 1.0}}), 1);
}

// NCCL_COMM_BLOCKING=1 would make NCCL block where no deadline reaches: refused when a timeout is set.
TEST(NcclNonBlockingEnv, ABlockingOverrideIsRefusedWhenATimeoutIsSet) {
  const char* saved = std::getenv("NCCL_COMM_BLOCKING");
  const std::string before = saved != nullptr ? saved : "";
  ::unsetenv("NCCL_COMM_BLOCKING");
  EXPECT_TRUE(check_nonblocking_env(30.0, "sat-3").is_ok());
  ::setenv("NCCL_COMM_BLOCKING", "0", 1);
  EXPECT_TRUE(check_nonblocking_env(30.0, "sat-3").is_ok());
  ::setenv("NCCL_COMM_BLOCKING", "1", 1);
  EXPECT_TRUE(check_nonblocking_env(0.0, "sat-3").is_ok());  // no deadline to lose
  const Status s = check_nonblocking_env(30.0, "sat-3");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("NCCL_COMM_BLOCKING=1 on sat-3"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("30 s timeout"), std::string::npos) << s.message();
  if (saved != nullptr) {
    ::setenv("NCCL_COMM_BLOCKING", before.c_str(), 1);
  } else {
    ::unsetenv("NCCL_COMM_BLOCKING");
  }
}

}  // namespace
}  // namespace perigee::collectives
