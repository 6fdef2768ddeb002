// MpiCommunicator with a timeout, on 1-3 real MPI ranks: the timed (nonblocking + polling) path
// gives exactly the blocking path's results, chunking included; a rank that skips a collective
// makes every other rank fail within the timeout plus a small slack, with kUnavailable naming the
// collective, and the communicator refuses later calls; when the skipping rank joins late, the
// abandoned collective completes (correct result) and the communicator is usable again.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "collectives/mpi_communicator.hpp"

namespace perigee::collectives {
namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<MpiCommunicator> world(double timeout_s) {
  std::unique_ptr<MpiCommunicator> c;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &c, timeout_s));
  return c;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(MpiTimeout, RejectsBadTimeouts) {
  std::unique_ptr<MpiCommunicator> c;
  EXPECT_EQ(MpiCommunicator::create(MPI_COMM_WORLD, &c, -1.0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MpiCommunicator::create(MPI_COMM_WORLD, &c, std::nan("")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c, nullptr);
  auto ok = world(0.0);
  EXPECT_EQ(ok->timeout_s(), 0.0);
  EXPECT_EQ(ok->set_timeout(-0.5).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ok->set_timeout(2.5).is_ok());
  EXPECT_EQ(ok->timeout_s(), 2.5);
  EXPECT_EQ(ok->set_chunk_elements(0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ok->chunk_elements(), MpiCommunicator::kDefaultChunkElements);
}

// Every collective on the timed path, with and without chunking, against the blocking path.
TEST(MpiTimeout, TimedCollectivesMatchBlockingBitForBit) {
  for (size_t chunk : {MpiCommunicator::kDefaultChunkElements, size_t{7}}) {
    SCOPED_TRACE("chunk elements " + std::to_string(chunk));
    auto blocking = world(0.0);
    auto timed = world(30.0);
    ASSERT_TRUE(blocking->set_chunk_elements(chunk).is_ok());
    ASSERT_TRUE(timed->set_chunk_elements(chunk).is_ok());
    const int p = timed->size(), r = timed->rank();
    const size_t n = 1003;
    std::vector<float> send(n);
    for (size_t i = 0; i < n; ++i)
      send[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(r)) / 3.0f;
    std::vector<float> a(n), b(n);
    ASSERT_TRUE(blocking->all_reduce(send.data(), a.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
    ASSERT_TRUE(timed->all_reduce(send.data(), b.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
    double total_diff = 0.0;
    for (size_t i = 0; i < n; ++i) total_diff += std::fabs(a[i] - b[i]);
    // Both paths add the same p values per element; with p <= 2 the sum is order-free, so bit-equal.
    if (p <= 2) {
      EXPECT_EQ(a, b);
    }
    EXPECT_LT(total_diff, 1e-3);
    std::vector<float> inplace = send;
    ASSERT_TRUE(
        timed->all_reduce(inplace.data(), inplace.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
    EXPECT_EQ(inplace, b);

    std::vector<int64_t> mx(n), expect_mx(n);
    std::vector<int64_t> mine(n);
    for (size_t i = 0; i < n; ++i) {
      mine[i] = static_cast<int64_t>((i * 7919 + static_cast<size_t>(r) * 104729) % 1000003);
      expect_mx[i] = 0;
      for (int q = 0; q < p; ++q) {
        expect_mx[i] =
            std::max<int64_t>(expect_mx[i], static_cast<int64_t>((i * 7919 + q * 104729) % 1000003));
      }
    }
    ASSERT_TRUE(timed->all_reduce(mine.data(), mx.data(), n, DataType::kInt64, ReduceOp::kMax).is_ok());
    EXPECT_EQ(mx, expect_mx);

    for (int root = 0; root < p; ++root) {
      std::vector<double> v(n, r == root ? 0.25 + root : -1.0);
      ASSERT_TRUE(timed->broadcast(v.data(), n, DataType::kFloat64, root).is_ok());
      for (double x : v) ASSERT_EQ(x, 0.25 + root);
    }
    std::vector<int32_t> block = {r, 10 * r, 100 * r};
    std::vector<int32_t> all(3 * p, -1);
    ASSERT_TRUE(timed->all_gather(block.data(), all.data(), 3, DataType::kInt32).is_ok());
    for (int q = 0; q < p; ++q) EXPECT_EQ(all[3 * q + 2], 100 * q);
    EXPECT_TRUE(timed->barrier().is_ok());
    EXPECT_FALSE(timed->broken());
  }
}

enum class Op { kAllReduce, kBroadcast, kAllGather, kBarrier };

const char* op_name(Op op) {
  switch (op) {
    case Op::kAllReduce:
      return "all_reduce";
    case Op::kBroadcast:
      return "broadcast";
    case Op::kAllGather:
      return "all_gather";
    case Op::kBarrier:
      return "barrier";
  }
  return "?";
}

// One collective over `values` (size() ints). Broadcast's root is the last rank (the one that skips:
// a root's own send may complete without the receivers, so the receivers are the ones to time out).
Status run_op(MpiCommunicator& c, Op op, std::vector<int32_t>* values, std::vector<int32_t>* gathered) {
  switch (op) {
    case Op::kAllReduce:
      return c.all_reduce(values->data(), values->data(), values->size(), DataType::kInt32, ReduceOp::kSum);
    case Op::kBroadcast:
      return c.broadcast(values->data(), values->size(), DataType::kInt32, c.size() - 1);
    case Op::kAllGather:
      return c.all_gather(values->data(), gathered->data(), values->size(), DataType::kInt32);
    case Op::kBarrier:
      return c.barrier();
  }
  return Status::ok();
}

class SkippedCollective : public ::testing::TestWithParam<Op> {};

TEST_P(SkippedCollective, OthersFailWithinTheTimeoutThenRecoverWhenTheLateRankJoins) {
  const Op op = GetParam();
  constexpr double kTimeout = 1.0;
  constexpr double kSlack = 2.0;  // a loaded CI machine, oversubscribed ranks
  auto c = world(kTimeout);
  const int p = c->size(), r = c->rank();
  if (p < 2) GTEST_SKIP() << "needs 2 or more ranks";
  const bool skipper = r == p - 1;
  const size_t n = 4096;
  std::vector<int32_t> values(n, r + 1);
  std::vector<int32_t> gathered(n * p, -1);
  if (!skipper) {
    const auto t0 = Clock::now();
    Status s = run_op(*c, op, &values, &gathered);
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
    EXPECT_TRUE(contains(s.message(), std::string(op_name(op)) + " of ")) << s.message();
    EXPECT_TRUE(contains(s.message(), "did not complete within 1 s")) << s.message();
    EXPECT_TRUE(contains(s.message(), "a peer rank died or stopped responding")) << s.message();
    EXPECT_GE(elapsed, kTimeout);
    EXPECT_LT(elapsed, kTimeout + kSlack);
    EXPECT_TRUE(c->broken());
    int32_t x = 1;
    Status later = c->all_reduce(&x, &x, 1, DataType::kInt32, ReduceOp::kSum);
    EXPECT_EQ(later.code(), StatusCode::kUnavailable);
    EXPECT_TRUE(contains(later.message(), "unusable")) << later.message();
  }
  // The late rank joins once every other rank has given up (a world barrier orders it).
  MPI_Barrier(MPI_COMM_WORLD);
  if (skipper) {
    ASSERT_TRUE(c->set_timeout(30.0).is_ok());
    Status s = run_op(*c, op, &values, &gathered);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  } else {
    Status s = c->wait_abandoned(30.0);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_FALSE(c->broken());
  }
  // The abandoned collective delivered its result into the buffers it was given.
  if (op == Op::kAllReduce) {
    EXPECT_EQ(values[n - 1], p * (p + 1) / 2);
  }
  if (op == Op::kBroadcast) {
    EXPECT_EQ(values[0], p);
  }
  if (op == Op::kAllGather) {
    for (int q = 0; q < p; ++q) EXPECT_EQ(gathered[q * n], q + 1);
  }
  ASSERT_TRUE(c->set_timeout(30.0).is_ok());
  int32_t one = 1;
  ASSERT_TRUE(c->all_reduce(&one, &one, 1, DataType::kInt32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(one, p);
}

INSTANTIATE_TEST_SUITE_P(MpiTimeout, SkippedCollective,
                         ::testing::Values(Op::kAllReduce, Op::kBroadcast, Op::kAllGather, Op::kBarrier),
                         [](const ::testing::TestParamInfo<Op>& info) {
                           return std::string(op_name(info.param));
                         });

TEST(MpiTimeout, WaitAbandonedGivesUpWhileThePeerStaysAway) {
  auto c = world(0.5);
  const int p = c->size(), r = c->rank();
  if (p < 2) GTEST_SKIP() << "needs 2 or more ranks";
  int32_t v = 1;
  if (r != 0) {
    EXPECT_EQ(c->all_reduce(&v, &v, 1, DataType::kInt32, ReduceOp::kSum).code(), StatusCode::kUnavailable);
    Status s = c->wait_abandoned(0.2);
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_TRUE(contains(s.message(), "still pending")) << s.message();
    EXPECT_TRUE(c->broken());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0) {
    ASSERT_TRUE(c->set_timeout(30.0).is_ok());
    EXPECT_TRUE(c->all_reduce(&v, &v, 1, DataType::kInt32, ReduceOp::kSum).is_ok());
  } else {
    EXPECT_TRUE(c->wait_abandoned(30.0).is_ok());
  }
  EXPECT_EQ(v, p);
}

// A communicator destroyed with overlapped all-reduces it never waited for (its user gave up between
// start_all_reduce and wait_all) finishes them first: MPI would otherwise write into buffers the
// caller frees next, and MPI_Finalize crashed progressing them on the freed communicator.
TEST(MpiTimeout, DestroyedWithPendingAllReducesFinishesThem) {
  const int p = world(0.0)->size();
  for (double timeout : {0.0, 30.0}) {
    std::vector<float> v(size_t{1} << 20);
    int r = 0;
    {
      auto c = world(timeout);
      r = c->rank();
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((r + 1) * static_cast<int>(i % 7));
      if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ASSERT_TRUE(
          c->start_all_reduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
      if (r != 0) {
        ASSERT_TRUE(c->wait_all().is_ok());
      } else {
        EXPECT_EQ(c->pending(), 1u);
      }
    }
    int wrong = 0;
    for (size_t i = 0; i < v.size(); ++i)
      wrong += v[i] != static_cast<float>(p * (p + 1) / 2 * static_cast<int>(i % 7));
    EXPECT_EQ(wrong, 0) << "rank " << r << ", timeout " << timeout;
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

}  // namespace
}  // namespace perigee::collectives
