// EmulatedLinkCommunicator on real MPI ranks: every algorithm gives the exact sum (integers and
// exactly-representable floats), in place and out of place; broadcast and all-gather; the model's
// delay is really waited for (wall >= model, a bound that cannot fail spuriously); a missing route
// fails every rank with the same clear error at the same collective, and nothing hangs.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "collectives/emulated_link_communicator.hpp"
#include "core/bf16.hpp"
#include "tests/collectives/bf16_test_util.hpp"
#include "tests/collectives/links_test_util.hpp"

namespace perigee::collectives {
namespace {

using algorithms::Algorithm;

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Fast links: microsecond latency, 1 TB/s, so the emulated delays are negligible in the sum tests.
std::unique_ptr<EmulatedLinkCommunicator> make_comm(Algorithm a, int grid_x = 0, int grid_y = 0,
                                                    int ranks_per_node = 1, double latency_s = 1e-6,
                                                    double time_scale = 1.0) {
  EmulationOptions opt;
  opt.algorithm = a;
  opt.shape.grid_x = grid_x;
  opt.shape.grid_y = grid_y;
  opt.shape.ranks_per_node = ranks_per_node;
  opt.time_scale = time_scale;
  opt.timeout_s = 30.0;
  std::unique_ptr<EmulatedLinkCommunicator> c;
  PERIGEE_CHECK_OR_DIE(EmulatedLinkCommunicator::create(
      MPI_COMM_WORLD, algorithms::uniform_route_fn(world_size(), latency_s, 1e12), opt, &c));
  return c;
}

// A ring communicator over `routes` with a deadline (the timing and failure tests).
std::unique_ptr<EmulatedLinkCommunicator> ring_comm(algorithms::RouteFn routes, double timeout_s,
                                                    double time_scale = 1.0) {
  EmulationOptions opt;
  opt.algorithm = Algorithm::kRing;
  opt.timeout_s = timeout_s;
  opt.time_scale = time_scale;
  std::unique_ptr<EmulatedLinkCommunicator> c;
  PERIGEE_CHECK_OR_DIE(EmulatedLinkCommunicator::create(MPI_COMM_WORLD, std::move(routes), opt, &c));
  return c;
}

// Every algorithm that fits this world size, with the shape it needs.
struct Case {
  Algorithm algorithm;
  int grid_x = 0, grid_y = 0, ranks_per_node = 1;
};

std::vector<Case> cases_for(int p) {
  std::vector<Case> cs = {{Algorithm::kRing},
                          {Algorithm::kRabenseifner},
                          {Algorithm::kDoubleBinaryTree},
                          {Algorithm::kNative},
                          {Algorithm::kAuto}};
  for (int x = 2; x <= p; ++x) {
    if (p % x == 0 && p / x >= 1) {
      cs.push_back({Algorithm::kTorus2d, x, p / x});
      break;
    }
  }
  if (p % 2 == 0 && p > 2) cs.push_back({Algorithm::kHierarchical, 0, 0, 2});
  return cs;
}

std::string case_name(const Case& c) {
  return std::string(algorithms::algorithm_name(c.algorithm)) + " x=" + std::to_string(c.grid_x) +
         " y=" + std::to_string(c.grid_y) + " rpn=" + std::to_string(c.ranks_per_node);
}

TEST(EmulatedLinkCommunicator, EveryAlgorithmSumsIntegersExactly) {
  const int p = world_size();
  const int me = world_rank();
  for (const Case& c : cases_for(p)) {
    auto comm = make_comm(c.algorithm, c.grid_x, c.grid_y, c.ranks_per_node);
    for (size_t count : {size_t{0}, size_t{1}, static_cast<size_t>(p) + 3, size_t{1000} + 7}) {
      std::vector<int64_t> send(count), recv(count, -1);
      for (size_t i = 0; i < count; ++i) send[i] = static_cast<int64_t>((me + 1) * 1000003 + i * (me + 7));
      ASSERT_TRUE(comm->all_reduce(send.data(), recv.data(), count, DataType::kInt64, ReduceOp::kSum).is_ok())
          << case_name(c);
      int wrong = 0;
      for (size_t i = 0; i < count; ++i) {
        int64_t expect = 0;
        for (int r = 0; r < p; ++r) expect += static_cast<int64_t>((r + 1) * 1000003 + i * (r + 7));
        wrong += recv[i] != expect;
      }
      EXPECT_EQ(wrong, 0) << case_name(c) << " count " << count;
    }
  }
}

TEST(EmulatedLinkCommunicator, EveryAlgorithmSumsFloatsExactlyInPlace) {
  const int p = world_size();
  const int me = world_rank();
  for (const Case& c : cases_for(p)) {
    auto comm = make_comm(c.algorithm, c.grid_x, c.grid_y, c.ranks_per_node);
    const size_t count = 4099;
    std::vector<float> buf(count);
    // Small integers and halves: every partial sum is exact in fp32, whatever the order.
    for (size_t i = 0; i < count; ++i) buf[i] = static_cast<float>(me + 1) + 0.5f * static_cast<float>(i % 7);
    ASSERT_TRUE(comm->all_reduce(buf.data(), buf.data(), count, DataType::kFloat32, ReduceOp::kSum).is_ok())
        << case_name(c);
    int wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      const float expect = static_cast<float>(p * (p + 1) / 2) + 0.5f * static_cast<float>(p) * (i % 7);
      wrong += buf[i] != expect;
    }
    EXPECT_EQ(wrong, 0) << case_name(c);
  }
}

TEST(EmulatedLinkCommunicator, MaxMinAndAverage) {
  const int p = world_size();
  const int me = world_rank();
  auto comm = make_comm(Algorithm::kRing);
  std::vector<int32_t> v(37, me), out(37);
  ASSERT_TRUE(comm->all_reduce(v.data(), out.data(), v.size(), DataType::kInt32, ReduceOp::kMax).is_ok());
  for (int32_t x : out) EXPECT_EQ(x, p - 1);
  ASSERT_TRUE(comm->all_reduce(v.data(), out.data(), v.size(), DataType::kInt32, ReduceOp::kMin).is_ok());
  for (int32_t x : out) EXPECT_EQ(x, 0);
  std::vector<double> d(11, 2.0 * me);
  ASSERT_TRUE(comm->all_reduce(d.data(), d.data(), d.size(), DataType::kFloat64, ReduceOp::kAvg).is_ok());
  for (double x : d) EXPECT_DOUBLE_EQ(x, static_cast<double>(p - 1));
  EXPECT_EQ(comm->all_reduce(v.data(), out.data(), v.size(), DataType::kInt32, ReduceOp::kAvg).code(),
            StatusCode::kInvalidArgument);
}

// A NaN on one rank makes max and min NaN on every rank, in every position, whichever rank's chunk the
// position falls in (std::max kept it only where it was already in the destination); +0 and -0 give
// max +0 and min -0 on every rank, whatever the order a schedule pairs them in. fp32, fp64 and bf16.
TEST(EmulatedLinkCommunicator, MaxAndMinPropagateNaNAndAgreeOnSignedZeros) {
  const int p = world_size();
  const int me = world_rank();
  for (const Case& c : cases_for(p)) {
    auto comm = make_comm(c.algorithm, c.grid_x, c.grid_y, c.ranks_per_node);
    const size_t n = 3 * static_cast<size_t>(p) + 2;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kMin}) {
      std::vector<float> f(n, me == p - 1 ? nan : 1.0f);
      ASSERT_TRUE(comm->all_reduce(f.data(), f.data(), n, DataType::kFloat32, op).is_ok()) << case_name(c);
      for (float x : f) EXPECT_TRUE(std::isnan(x)) << case_name(c);
      std::vector<double> d(n, me == 0 ? -0.0 : 0.0);
      ASSERT_TRUE(comm->all_reduce(d.data(), d.data(), n, DataType::kFloat64, op).is_ok()) << case_name(c);
      for (double x : d) EXPECT_EQ(std::signbit(x), p > 1 ? op == ReduceOp::kMin : true) << case_name(c);
      std::vector<uint16_t> b(n, me == p - 1 ? uint16_t{0x7FC1} : float_to_bf16(2.0f));
      ASSERT_TRUE(comm->all_reduce(b.data(), b.data(), n, DataType::kBFloat16, op).is_ok()) << case_name(c);
      for (uint16_t x : b) EXPECT_EQ(x, p > 1 ? 0x7FC0 : 0x7FC1) << case_name(c);  // the canonical quiet NaN
    }
  }
}

// bf16 (raw bits, each partial sum rounded to bf16): exact small-integer sums for every algorithm,
// and averages rounded once after the sum.
TEST(EmulatedLinkCommunicator, EveryAlgorithmSumsBf16) {
  using namespace testing;
  const int p = world_size();
  const int me = world_rank();
  for (const Case& c : cases_for(p)) {
    auto comm = make_comm(c.algorithm, c.grid_x, c.grid_y, c.ranks_per_node);
    const size_t count = 1031;
    std::vector<uint16_t> sum = rank_bf16(me, count, small_value), avg = sum;
    ASSERT_TRUE(comm->all_reduce(sum.data(), sum.data(), count, DataType::kBFloat16, ReduceOp::kSum).is_ok())
        << case_name(c);
    ASSERT_TRUE(comm->all_reduce(avg.data(), avg.data(), count, DataType::kBFloat16, ReduceOp::kAvg).is_ok())
        << case_name(c);
    int wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      wrong += bf16_to_float(sum[i]) != small_sum(p, i);
      wrong += avg[i] != float_to_bf16(small_sum(p, i) * (1.0f / static_cast<float>(p)));
    }
    EXPECT_EQ(wrong, 0) << case_name(c);
  }
}

// Half the bytes, half the bandwidth time: on slow links (1 GB/s, 1 us hops) a ring all-reduce of
// bf16 models about half the time of the same count in fp32.
TEST(EmulatedLinkCommunicator, Bf16HalvesTheModelledTransferTime) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  auto comm = ring_comm(algorithms::uniform_route_fn(p, 1e-6, 1e9), 30.0);
  const size_t count = 1 << 20;
  std::vector<float> f(count, 1.0f);
  std::vector<uint16_t> h(count, float_to_bf16(1.0f));
  ASSERT_TRUE(comm->all_reduce(f.data(), f.data(), count, DataType::kFloat32, ReduceOp::kSum).is_ok());
  const double fp32_s = comm->last().model_s;
  ASSERT_TRUE(comm->all_reduce(h.data(), h.data(), count, DataType::kBFloat16, ReduceOp::kSum).is_ok());
  const double bf16_s = comm->last().model_s;
  EXPECT_EQ(comm->last().bytes, count * 2);
  EXPECT_NEAR(bf16_s / fp32_s, 0.5, 0.02) << "fp32 " << fp32_s << " s, bf16 " << bf16_s << " s";
  EXPECT_EQ(bf16_to_float(h[count / 2]), static_cast<float>(p));
}

TEST(EmulatedLinkCommunicator, BroadcastAndAllGather) {
  const int p = world_size();
  const int me = world_rank();
  auto comm = make_comm(Algorithm::kRing);
  for (int root = 0; root < p; ++root) {
    std::vector<int32_t> b(513, me == root ? root * 17 + 3 : -1);
    ASSERT_TRUE(comm->broadcast(b.data(), b.size(), DataType::kInt32, root).is_ok());
    for (int32_t x : b) ASSERT_EQ(x, root * 17 + 3);
  }
  const size_t block = 29;
  std::vector<float> mine(block), all(block * static_cast<size_t>(p), -1.0f);
  for (size_t i = 0; i < block; ++i) mine[i] = static_cast<float>(me * 100 + static_cast<int>(i));
  ASSERT_TRUE(comm->all_gather(mine.data(), all.data(), block, DataType::kFloat32).is_ok());
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < block; ++i)
      ASSERT_EQ(all[r * block + i], static_cast<float>(r * 100 + static_cast<int>(i)));
  }
}

// The delay is real: with 5 ms per hop and time scale 1, a ring all-reduce on p ranks models
// 2(p-1) latency steps and the call takes at least that long in wall time.
TEST(EmulatedLinkCommunicator, WaitsForTheModelledDelay) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  auto comm = make_comm(Algorithm::kRing, 0, 0, 1, 5e-3, 1.0);
  std::vector<float> buf(64, 1.0f);
  ASSERT_TRUE(
      comm->all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  const CollectiveStats& s = comm->last();
  EXPECT_EQ(s.algorithm, Algorithm::kRing);
  EXPECT_NEAR(s.model_s, 2.0 * (p - 1) * 5e-3, 1e-3 * (p - 1));
  EXPECT_GE(s.wall_s, s.model_s * 0.999);
  EXPECT_GE(comm->now_s(), s.model_s);
  // Time scale 0.1: the same model, a tenth of the wall time (lower bound only).
  auto fast = make_comm(Algorithm::kRing, 0, 0, 1, 5e-3, 0.1);
  ASSERT_TRUE(
      fast->all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_NEAR(fast->last().model_s, s.model_s, 1e-9);
  EXPECT_GE(fast->last().wall_s, 0.1 * s.model_s * 0.999);
}

// A route that is gone: every rank fails the same collective with a message naming the ranks; the
// communicator stays usable for a later collective that does not need that route.
TEST(EmulatedLinkCommunicator, MissingRouteFailsEveryRankClearly) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  algorithms::RouteFn cut = route_fn_without_link_0_1(p);
  auto comm = ring_comm(cut, 30.0);
  std::vector<float> buf(100, 1.0f);
  Status st = comm->all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum);
  ASSERT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("link 0-1 down"), std::string::npos) << st.to_string();
  // Every rank saw the failure (no rank went on alone): an all-reduce of the verdicts agrees.
  int failed = 1, all_failed = 0;
  MPI_Allreduce(&failed, &all_failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(all_failed, p);
}

// A peer that comes late, after the others timed out: every rank fails with kUnavailable (the late
// one in its first round, whose peers have left), and MPI stays usable. The late peer completes the
// others' abandoned start-time all-reduce, so MPI writes into buffers the failed call left behind:
// they are kept alive for it (under ASan/valgrind a freed buffer here is a use after free).
TEST(EmulatedLinkCommunicator, LatePeerAfterATimeoutFailsEveryRankAndLeavesMpiUsable) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  auto comm = ring_comm(algorithms::uniform_route_fn(p, 1e-6, 1e12), 0.5);
  if (world_rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::vector<float> buf(64, 1.0f);
  const Status st = comm->all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  int failed = st.is_ok() ? 0 : 1, all_failed = 0;
  ASSERT_EQ(MPI_Allreduce(&failed, &all_failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
  EXPECT_EQ(all_failed, p);
  std::vector<double> more(1000, 1.0), sum(1000);
  ASSERT_EQ(MPI_Allreduce(more.data(), sum.data(), 1000, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
  EXPECT_EQ(sum[999], static_cast<double>(p));
}

// Slow links do not time out healthy peers: with 1 s per hop and a 0.4 s deadline, a binomial
// broadcast's rank 3 waits about 1 s for rank 1, which sleeps until rank 0's message is due, and
// rank 0 (done after its sends) waits about 2 s for the others in the next collective's start-time
// all-reduce. Only waiting beyond the modelled delays counts against timeout_s.
TEST(EmulatedLinkCommunicator, SlowLinksDoNotTimeOutHealthyPeers) {
  const int p = world_size();
  if (p < 4) GTEST_SKIP() << "needs 4 ranks (a rank that waits on a sleeping one)";
  auto comm = ring_comm(algorithms::uniform_route_fn(p, 1.0, 1e12), 0.4);
  std::vector<int32_t> buf(16, world_rank() == 0 ? 7 : 0);
  Status st = comm->broadcast(buf.data(), buf.size(), DataType::kInt32, 0);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(buf[15], 7);
  EXPECT_GE(comm->last().model_s, 1.9);  // at least two hops one after the other
  st = comm->broadcast(buf.data(), 1, DataType::kInt32, 1);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(buf[0], 7);
}

// A barrier after a collective on slow links waits for the peers still in their modelled delay (a
// broadcast's root leaves at once, its leaves 1 s later): a plain MPI barrier timed out on the root
// alone, which then refused every later call while the others went on.
TEST(EmulatedLinkCommunicator, ABarrierGrantsThePeersTheirModelledDelay) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  auto comm = ring_comm(algorithms::uniform_route_fn(p, 1.0, 1e12), 0.3, 0.5);  // 1 s links, 0.5 s wall
  std::vector<int32_t> buf(4, world_rank() == 0 ? 5 : 0);
  ASSERT_TRUE(comm->broadcast(buf.data(), buf.size(), DataType::kInt32, 0).is_ok());
  const Status st = comm->barrier();
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(buf[3], 5);
  EXPECT_TRUE(comm->broadcast(buf.data(), 1, DataType::kInt32, p - 1).is_ok());
}

// Count 0 moves nothing: no route is asked for (a cut link does not fail it) and no link time passes.
TEST(EmulatedLinkCommunicator, CountZeroBroadcastAndAllGatherAreFree) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  auto comm = ring_comm(route_fn_without_link_0_1(p), 30.0);
  float unused = 0.0f;
  Status st = comm->broadcast(&unused, 0, DataType::kFloat32, 0);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(comm->last().model_s, 0.0);
  st = comm->all_gather(&unused, &unused, 0, DataType::kFloat32);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(comm->last().model_s, 0.0);
  EXPECT_EQ(comm->modelled_seconds(), 0.0);
  // The deadline is the MPI layer's, and set_timeout changes it (it was ignored: 0 reported).
  EXPECT_EQ(comm->timeout_s(), 30.0);
  ASSERT_TRUE(comm->set_timeout(12.5).is_ok());
  EXPECT_EQ(comm->timeout_s(), 12.5);
  EXPECT_EQ(comm->set_timeout(-1.0).code(), StatusCode::kInvalidArgument);
}

TEST(EmulatedLinkCommunicator, BadOptionsAreRefused) {
  EmulationOptions opt;
  opt.time_scale = 0.0;
  std::unique_ptr<EmulatedLinkCommunicator> comm;
  Status st = EmulatedLinkCommunicator::create(
      MPI_COMM_WORLD, algorithms::uniform_route_fn(world_size(), 1e-6, 1e9), opt, &comm);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("time_scale"), std::string::npos);
  opt.time_scale = 1.0;
  opt.algorithm = Algorithm::kTorus2d;
  opt.shape.grid_x = world_size() + 1;
  opt.shape.grid_y = 1;
  st = EmulatedLinkCommunicator::create(MPI_COMM_WORLD, algorithms::uniform_route_fn(world_size(), 1e-6, 1e9),
                                        opt, &comm);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
}

}  // namespace
}  // namespace perigee::collectives
