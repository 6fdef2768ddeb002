// Overlapped all-reduces over the emulated laser links (EmulatedLinkCommunicator's worker thread)
// on 1-3 real MPI ranks: they return before the links delivered, give exactly the blocking
// results, refuse other collectives while pending, report a failure from wait_all() on every rank,
// and GradientBuckets over them (directly, and behind host staging as GPU ranks use them)
// averages exactly as one blocking all-reduce does.
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/emulated_link_communicator.hpp"
#include "collectives/gradient_buckets.hpp"
#include "collectives/staging_communicator.hpp"
#include "tests/collectives/fake_device.hpp"
#include "tests/collectives/links_test_util.hpp"

namespace perigee::collectives {
namespace {

using algorithms::Algorithm;
using Clock = std::chrono::steady_clock;

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::unique_ptr<EmulatedLinkCommunicator> make_comm(Algorithm a, double latency_s,
                                                    algorithms::RouteFn routes = nullptr) {
  EmulationOptions opt;
  opt.algorithm = a;
  opt.time_scale = 1.0;
  opt.timeout_s = 30.0;
  if (!routes) routes = algorithms::uniform_route_fn(world_size(), latency_s, 1e12);
  std::unique_ptr<EmulatedLinkCommunicator> c;
  PERIGEE_CHECK_OR_DIE(EmulatedLinkCommunicator::create(MPI_COMM_WORLD, routes, opt, &c));
  return c;
}

// Routes that hold the links' worker at its first route query until the test opens the gate, so
// "still pending" does not depend on how the machine schedules the test's threads.
struct Gate {
  std::shared_ptr<std::atomic<bool>> open = std::make_shared<std::atomic<bool>>(false);
  algorithms::RouteFn routes(double latency_s) const {
    return routes(algorithms::uniform_route_fn(world_size(), latency_s, 1e12));
  }
  algorithms::RouteFn routes(algorithms::RouteFn base) const {
    auto flag = open;
    return [base, flag](int src, int dst, double t, algorithms::Route* out) -> Status {
      while (!flag->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return base(src, dst, t, out);
    };
  }
};

// Small integers: every sum is exact, so any schedule and any cut give the same bits.
float value(int r, size_t i) {
  return static_cast<float>((r + 1) * static_cast<int>(i % 11) - 5);
}
std::vector<float> rank_values(int r, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(r, i);
  return v;
}

TEST(LinksOverlap, TestMainGrantsThreadMultipleSoTheLinksOverlap) {
  int provided = 0;
  MPI_Query_thread(&provided);
  ASSERT_EQ(provided, MPI_THREAD_MULTIPLE);
  EXPECT_TRUE(make_comm(Algorithm::kRing, 1e-6)->overlaps());
}

TEST(LinksOverlap, StartedAllReducesGiveTheBlockingResults) {
  const int p = world_size();
  for (Algorithm a : {Algorithm::kRing, Algorithm::kRabenseifner, Algorithm::kDoubleBinaryTree,
                      Algorithm::kNative, Algorithm::kAuto}) {
    auto comm = make_comm(a, 1e-6);
    const int me = comm->rank();
    std::vector<float> f_sum = rank_values(me, 1001), f_avg = rank_values(me, 77), f_out(1001);
    std::vector<int64_t> i_max(300);
    for (size_t i = 0; i < i_max.size(); ++i) i_max[i] = static_cast<int64_t>((i * 7 + me * 13) % 50);
    ASSERT_TRUE(
        comm->start_all_reduce(f_sum.data(), f_out.data(), f_sum.size(), DataType::kFloat32, ReduceOp::kSum)
            .is_ok());
    ASSERT_TRUE(
        comm->start_all_reduce(f_avg.data(), f_avg.data(), f_avg.size(), DataType::kFloat32, ReduceOp::kAvg)
            .is_ok());
    ASSERT_TRUE(
        comm->start_all_reduce(i_max.data(), i_max.data(), i_max.size(), DataType::kInt64, ReduceOp::kMax)
            .is_ok());
    ASSERT_TRUE(comm->progress().is_ok());
    ASSERT_TRUE(comm->wait_all().is_ok());
    EXPECT_EQ(comm->pending(), 0u);
    for (size_t i = 0; i < f_out.size(); ++i) {
      float sum = 0.0f;
      for (int r = 0; r < p; ++r) sum += value(r, i);
      ASSERT_EQ(f_out[i], sum) << algorithms::algorithm_name(a) << " i=" << i;
      ASSERT_EQ(f_sum[i], value(me, i)) << "out of place: send untouched";
    }
    for (size_t i = 0; i < f_avg.size(); ++i) {
      float sum = 0.0f;
      for (int r = 0; r < p; ++r) sum += value(r, i);
      ASSERT_EQ(f_avg[i], p > 1 ? sum * (1.0f / static_cast<float>(p)) : sum) << i;
    }
    for (size_t i = 0; i < i_max.size(); ++i) {
      int64_t m = 0;
      for (int r = 0; r < p; ++r) m = std::max<int64_t>(m, static_cast<int64_t>((i * 7 + r * 13) % 50));
      ASSERT_EQ(i_max[i], m) << i;
    }
  }
}

// start returns while the worker still holds the all-reduce (the gate keeps it there), and with
// 0.1 s per hop the ring on p >= 2 ranks takes at least 2(p-1) x 0.1 s of wall time from the start
// (wall >= model, a bound that cannot fail spuriously).
TEST(LinksOverlap, StartReturnsBeforeTheLinksDelivered) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  Gate gate;
  auto comm = make_comm(Algorithm::kRing, 0.1, gate.routes(0.1));
  std::vector<float> buf = rank_values(comm->rank(), 64);
  const auto t0 = Clock::now();  // before the collective's emulated start
  ASSERT_TRUE(
      comm->start_all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(comm->pending(), 1u);
  EXPECT_DOUBLE_EQ(comm->total_model_s(), 0.0);  // nothing finished yet
  EXPECT_EQ(buf, rank_values(comm->rank(), 64)) << "nothing has arrived";
  *gate.open = true;
  ASSERT_TRUE(comm->wait_all().is_ok());
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  const CollectiveStats s = comm->last();
  EXPECT_EQ(s.op, "all_reduce");
  EXPECT_NEAR(s.model_s, 2.0 * (p - 1) * 0.1, 1e-3 * p);
  EXPECT_GE(waited, s.model_s * 0.999);
  EXPECT_EQ(buf[3], [&] {
    float sum = 0.0f;
    for (int r = 0; r < p; ++r) sum += value(r, 3);
    return sum;
  }());
}

TEST(LinksOverlap, OtherCollectivesRefusedWhilePending) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks (one rank routes nothing, so the gate holds nothing)";
  Gate gate;  // holds the started all-reduce on every rank until the refusals are done
  auto comm = make_comm(Algorithm::kRing, 1e-4, gate.routes(1e-4));
  std::vector<float> buf(32, 1.0f), other(4, 2.0f);
  ASSERT_TRUE(
      comm->start_all_reduce(buf.data(), buf.data(), buf.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  for (Status st : {comm->all_reduce(other.data(), other.data(), 4, DataType::kFloat32, ReduceOp::kSum),
                    comm->broadcast(other.data(), 4, DataType::kFloat32, 0), comm->barrier(),
                    comm->all_reduce_with(Algorithm::kRing, other.data(), other.data(), 4, DataType::kFloat32,
                                          ReduceOp::kSum)}) {
    EXPECT_EQ(st.code(), StatusCode::kInternal) << st.to_string();
    EXPECT_NE(st.message().find("call wait_all() first"), std::string::npos) << st.to_string();
  }
  // Argument errors come back at start, before anything is queued.
  std::vector<int32_t> ints(4, 1);
  EXPECT_EQ(comm->start_all_reduce(ints.data(), ints.data(), 4, DataType::kInt32, ReduceOp::kAvg).code(),
            StatusCode::kInvalidArgument);
  *gate.open = true;
  ASSERT_TRUE(comm->wait_all().is_ok());
  EXPECT_EQ(buf[0], static_cast<float>(p));
  ASSERT_TRUE(comm->broadcast(other.data(), 4, DataType::kFloat32, 0).is_ok());
  ASSERT_TRUE(comm->barrier().is_ok());
}

// A route that is gone fails the first overlapped all-reduce on every rank; the one started after
// it is skipped (never entered, on any rank); wait_all() reports the failure, and the communicator
// goes on with collectives that do not need the route.
TEST(LinksOverlap, AFailureComesBackFromWaitAllOnEveryRank) {
  const int p = world_size();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  Gate gate;  // both are queued before the first one fails
  auto comm = make_comm(Algorithm::kRing, 0.0, gate.routes(route_fn_without_link_0_1(p)));
  std::vector<float> a(100, 1.0f), b(100, 1.0f);
  ASSERT_TRUE(
      comm->start_all_reduce(a.data(), a.data(), a.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(
      comm->start_all_reduce(b.data(), b.data(), b.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  *gate.open = true;
  Status st = comm->wait_all();
  ASSERT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_NE(st.message().find("link 0-1 down"), std::string::npos) << st.to_string();
  EXPECT_EQ(b, std::vector<float>(100, 1.0f)) << "the skipped all-reduce left its buffer alone";
  EXPECT_TRUE(comm->wait_all().is_ok()) << "the failure is reported once";
  ASSERT_TRUE(comm->barrier().is_ok());
}

TEST(LinksOverlap, GradientBucketsAverageAsOneBlockingAllReduce) {
  auto comm = make_comm(Algorithm::kAuto, 1e-4);
  const size_t n = 5000;
  std::vector<float> reference = rank_values(comm->rank(), n);
  ASSERT_TRUE(
      comm->all_reduce(reference.data(), reference.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  for (size_t bytes : {size_t{400}, size_t{4000}, size_t{1} << 20}) {
    GradientBuckets buckets(comm.get(), bytes);
    EXPECT_EQ(buckets.overlapping(), comm->size() > 1);  // one rank sends nothing
    std::vector<float> g = rank_values(comm->rank(), n);
    ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
    for (size_t first = n; first-- > 0;) {
      if (first % 250 == 0) {
        ASSERT_TRUE(buckets.ready_from(first).is_ok());
      }
    }
    ASSERT_TRUE(buckets.finish().is_ok());
    EXPECT_EQ(g, reference) << bytes << " bytes per bucket";
    if (comm->size() > 1) {
      if (bytes < n * sizeof(float)) {
        EXPECT_GT(buckets.buckets(), 1) << bytes;
      } else {
        EXPECT_EQ(buckets.buckets(), 1) << bytes;
      }
    }
  }
}

// GPU ranks reach the links through pinned host staging: the wrapper overlaps because the links do.
TEST(LinksOverlap, BehindHostStagingTheBucketsOverlapToo) {
  FakeDevice dev;
  std::shared_ptr<Communicator> links = make_comm(Algorithm::kRing, 1e-4);
  std::unique_ptr<HostStagingCommunicator> c;
  ASSERT_TRUE(HostStagingCommunicator::create(links, dev.callbacks(), &c, 1024).is_ok());
  EXPECT_TRUE(c->overlaps());
  const size_t n = 2000;
  std::vector<float> reference = rank_values(c->rank(), n);
  ASSERT_TRUE(
      c->all_reduce(reference.data(), reference.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  GradientBuckets buckets(c.get(), 2000);
  std::vector<float> g = rank_values(c->rank(), n);
  ASSERT_TRUE(buckets.begin(g.data(), n).is_ok());
  for (size_t first = n; first-- > 0;) {
    if (first % 200 == 0) {
      ASSERT_TRUE(buckets.ready_from(first).is_ok());
    }
  }
  ASSERT_TRUE(buckets.finish().is_ok());
  EXPECT_EQ(g, reference);
  EXPECT_EQ(buckets.buckets(), c->size() > 1 ? 4 : 0);
}

}  // namespace
}  // namespace perigee::collectives
