// HostStagingCommunicator's overlapped all-reduce over a real MpiCommunicator on 1-3 ranks, with
// host memory standing in for device memory (FakeDevice): each chunk goes to a pinned block of its
// own at start and comes back only in wait_all(), results equal the blocking all_reduce's, the
// blocks are reused by the next pass, other collectives are refused while chunks are in flight, and
// over a communicator that cannot overlap start_all_reduce is the blocking all_reduce.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/gradient_buckets.hpp"
#include "collectives/mpi_communicator.hpp"
#include "collectives/staging_communicator.hpp"
#include "tests/collectives/fake_device.hpp"

namespace perigee::collectives {
namespace {

std::shared_ptr<MpiCommunicator> mpi_world() {
  std::unique_ptr<MpiCommunicator> c;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &c, 30.0));
  return std::shared_ptr<MpiCommunicator>(std::move(c));
}

// Forwards the collectives to MPI but keeps Communicator's blocking start_all_reduce (no overlap).
class BlockingOnly final : public Communicator {
 public:
  explicit BlockingOnly(std::shared_ptr<MpiCommunicator> mpi) : mpi_(std::move(mpi)) {}
  const char* name() const override { return "blocking"; }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  Status all_reduce(const void* s, void* r, size_t n, DataType t, ReduceOp op) override {
    return mpi_->all_reduce(s, r, n, t, op);
  }
  Status broadcast(void* b, size_t n, DataType t, int root) override {
    return mpi_->broadcast(b, n, t, root);
  }
  Status all_gather(const void* s, void* r, size_t n, DataType t) override {
    return mpi_->all_gather(s, r, n, t);
  }
  Status barrier() override { return mpi_->barrier(); }

 private:
  std::shared_ptr<MpiCommunicator> mpi_;
};

std::unique_ptr<HostStagingCommunicator> staged(std::shared_ptr<Communicator> host, FakeDevice* dev,
                                                size_t chunk_bytes) {
  std::unique_ptr<HostStagingCommunicator> c;
  PERIGEE_CHECK_OR_DIE(HostStagingCommunicator::create(std::move(host), dev->callbacks(), &c, chunk_bytes));
  return c;
}

float value(int r, size_t i) {
  return static_cast<float>((r + 2) * static_cast<int>(i % 7) - 3);
}
std::vector<float> rank_values(int r, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(r, i);
  return v;
}
float sum_over(int p, size_t i) {
  float s = 0.0f;
  for (int r = 0; r < p; ++r) s += value(r, i);
  return s;
}

TEST(StagingOverlap, ChunksComeBackOnlyInWaitAllWithTheBlockingResults) {
  FakeDevice dev;
  auto c = staged(mpi_world(), &dev, 64);  // 16 floats or 8 int64 per chunk
  ASSERT_TRUE(c->overlaps());
  const int p = c->size();
  const int me = c->rank();
  std::vector<float> sum_send = rank_values(me, 100), sum_recv(100, -99.0f);
  std::vector<float> avg = rank_values(me, 37);
  std::vector<int64_t> mx(5);
  for (size_t i = 0; i < mx.size(); ++i) mx[i] = static_cast<int64_t>(i * 10 + me);
  ASSERT_TRUE(
      c->start_all_reduce(sum_send.data(), sum_recv.data(), 100, DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(c->start_all_reduce(avg.data(), avg.data(), 37, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  ASSERT_TRUE(c->start_all_reduce(mx.data(), mx.data(), 5, DataType::kInt64, ReduceOp::kMax).is_ok());
  EXPECT_EQ(c->pending(), 7u + 3u + 1u);
  EXPECT_EQ(dev.to_host_calls, 11);
  EXPECT_EQ(dev.to_device_calls, 0);
  EXPECT_EQ(sum_recv, std::vector<float>(100, -99.0f)) << "recv changes only in wait_all()";
  EXPECT_EQ(avg, rank_values(me, 37));
  ASSERT_TRUE(c->progress().is_ok());
  ASSERT_TRUE(c->wait_all().is_ok());
  EXPECT_EQ(c->pending(), 0u);
  EXPECT_EQ(dev.to_device_calls, 11);
  for (size_t i = 0; i < 100; ++i) ASSERT_EQ(sum_recv[i], sum_over(p, i)) << i;
  EXPECT_EQ(sum_send, rank_values(me, 100));
  for (size_t i = 0; i < 37; ++i) {
    ASSERT_EQ(avg[i], p > 1 ? sum_over(p, i) * (1.0f / static_cast<float>(p)) : value(0, i)) << i;
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(mx[i], static_cast<int64_t>(i * 10 + p - 1));
  EXPECT_TRUE(c->wait_all().is_ok()) << "nothing pending: a no-op";
}

TEST(StagingOverlap, PinnedBlocksAreKeptForTheNextPass) {
  FakeDevice dev;
  {
    auto c = staged(mpi_world(), &dev, 400);
    std::vector<float> a(250), b(30);
    for (int pass = 0; pass < 3; ++pass) {
      a = rank_values(c->rank(), 250);
      b = rank_values(c->rank(), 30);
      ASSERT_TRUE(c->start_all_reduce(a.data(), a.data(), 250, DataType::kFloat32, ReduceOp::kSum).is_ok());
      ASSERT_TRUE(c->start_all_reduce(b.data(), b.data(), 30, DataType::kFloat32, ReduceOp::kSum).is_ok());
      ASSERT_TRUE(c->wait_all().is_ok());
      EXPECT_EQ(dev.allocs, 4) << "pass " << pass << ": 100 + 100 + 50 + 30 floats, allocated once";
      EXPECT_EQ(c->overlap_pinned_bytes(), (100u + 100u + 50u + 30u) * 4u);
      EXPECT_EQ(a[249], sum_over(c->size(), 249));
      EXPECT_EQ(b[29], sum_over(c->size(), 29));
    }
    EXPECT_EQ(c->staging_bytes(), 0u) << "the blocking staging buffer is not used";
  }
  EXPECT_EQ(dev.frees, 4);
}

TEST(StagingOverlap, OtherCollectivesRefusedWhileChunksAreInFlight) {
  FakeDevice dev;
  auto c = staged(mpi_world(), &dev, 1024);
  std::vector<float> g = rank_values(c->rank(), 64), other(4, 1.0f), gathered(4 * c->size());
  ASSERT_TRUE(c->start_all_reduce(g.data(), g.data(), 64, DataType::kFloat32, ReduceOp::kSum).is_ok());
  for (Status st : {c->all_reduce(other.data(), other.data(), 4, DataType::kFloat32, ReduceOp::kSum),
                    c->broadcast(other.data(), 4, DataType::kFloat32, 0),
                    c->all_gather(other.data(), gathered.data(), 4, DataType::kFloat32), c->barrier()}) {
    EXPECT_EQ(st.code(), StatusCode::kInternal) << st.to_string();
    EXPECT_NE(st.message().find("call wait_all() first"), std::string::npos) << st.to_string();
  }
  ASSERT_TRUE(c->wait_all().is_ok());
  EXPECT_EQ(g[5], sum_over(c->size(), 5));
  ASSERT_TRUE(c->barrier().is_ok());
}

TEST(StagingOverlap, OverACommunicatorThatCannotOverlapStartIsBlocking) {
  FakeDevice dev;
  auto c = staged(std::make_shared<BlockingOnly>(mpi_world()), &dev, 64);
  EXPECT_FALSE(c->overlaps());
  std::vector<float> g = rank_values(c->rank(), 40);
  ASSERT_TRUE(c->start_all_reduce(g.data(), g.data(), 40, DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(c->pending(), 0u);
  EXPECT_EQ(dev.to_device_calls, 3) << "copied back at once, chunk by chunk";
  EXPECT_EQ(g[39], sum_over(c->size(), 39));
  ASSERT_TRUE(c->wait_all().is_ok());
  GradientBuckets buckets(c.get(), 64);
  EXPECT_FALSE(buckets.overlapping());
}

TEST(StagingOverlap, GradientBucketsAverageAsOneBlockingAllReduce) {
  FakeDevice dev;
  auto c = staged(mpi_world(), &dev, 256);
  const size_t n = 3000;
  std::vector<float> reference = rank_values(c->rank(), n);
  ASSERT_TRUE(
      c->all_reduce(reference.data(), reference.data(), n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  for (size_t bytes : {size_t{400}, size_t{5000}, size_t{1} << 20}) {
    GradientBuckets buckets(c.get(), bytes);
    EXPECT_EQ(buckets.overlapping(), c->size() > 1);
    std::vector<float> g = rank_values(c->rank(), n);
    ASSERT_TRUE(buckets.begin(g.data(), n).is_ok());
    for (size_t first = n; first-- > 0;) {
      if (first % 100 == 0) {
        ASSERT_TRUE(buckets.ready_from(first).is_ok());
      }
    }
    ASSERT_TRUE(buckets.finish().is_ok());
    EXPECT_EQ(g, reference) << bytes << " bytes per bucket";
  }
}

// A copy that fails at start (on every rank alike) comes back at once, traced; the chunks started
// before it still complete in wait_all(), and the communicator goes on.
TEST(StagingOverlap, ACopyFailureAtStartLeavesTheStartedChunksToWaitAll) {
  FakeDevice dev;
  dev.fail_to_host_at = 1;
  auto c = staged(mpi_world(), &dev, 16);
  std::vector<float> g = rank_values(c->rank(), 10);
  Status st = c->start_all_reduce(g.data(), g.data(), 10, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(st.code(), StatusCode::kCudaError);
  EXPECT_NE(st.to_string().find("injected copy failure"), std::string::npos);
  EXPECT_EQ(c->pending(), 1u);
  ASSERT_TRUE(c->wait_all().is_ok());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(g[i], sum_over(c->size(), i)) << i;
  EXPECT_EQ(g[4], value(c->rank(), 4)) << "never started";
  ASSERT_TRUE(c->barrier().is_ok());
}

// A host communicator whose overlapped all-reduces start and then fail in wait_all (as MPI's do
// when their deadline expires: the requests are abandoned, and MPI may still write into the blocks).
class FailsInWaitAll final : public Communicator {
 public:
  const char* name() const override { return "fails-in-wait-all"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Status all_reduce(const void*, void*, size_t, DataType, ReduceOp) override {
    return make_error(StatusCode::kUnavailable, "injected timeout");
  }
  Status broadcast(void*, size_t, DataType, int) override { return Status::ok(); }
  Status all_gather(const void*, void*, size_t, DataType) override { return Status::ok(); }
  Status barrier() override { return Status::ok(); }
  bool overlaps() const override { return true; }
  Status start_all_reduce(const void*, void*, size_t, DataType, ReduceOp) override { return Status::ok(); }
  Status wait_all() override { return make_error(StatusCode::kUnavailable, "injected timeout"); }
};

// Pinned memory is freed only while the host communicator has not failed: after a failed wait_all
// or a failed blocking all-reduce, neither the blocks nor the staging buffer are freed (not when the
// staging buffer grows, not in the destructor); without a failure everything allocated is freed.
TEST(StagingOverlap, PinnedMemoryOfAFailedCollectiveIsNeverFreed) {
  std::vector<float> g(10, 1.0f);
  {
    FakeDevice dev;
    {
      auto c = staged(std::make_shared<FailsInWaitAll>(), &dev, 16);
      ASSERT_TRUE(c->start_all_reduce(g.data(), g.data(), 10, DataType::kFloat32, ReduceOp::kSum).is_ok());
      EXPECT_EQ(c->wait_all().code(), StatusCode::kUnavailable);
    }
    EXPECT_EQ(dev.allocs, 3);
    EXPECT_EQ(dev.frees, 0);
  }
  {
    FakeDevice dev;
    {
      auto c = staged(std::make_shared<FailsInWaitAll>(), &dev, 64);
      EXPECT_EQ(c->all_reduce(g.data(), g.data(), 2, DataType::kFloat32, ReduceOp::kSum).code(),
                StatusCode::kUnavailable);
      EXPECT_EQ(c->all_reduce(g.data(), g.data(), 10, DataType::kFloat32, ReduceOp::kSum).code(),
                StatusCode::kUnavailable);  // grows the staging buffer
    }
    EXPECT_EQ(dev.allocs, 2);
    EXPECT_EQ(dev.frees, 0);
  }
  {
    FakeDevice dev;
    {
      auto c = staged(mpi_world(), &dev, 16);
      ASSERT_TRUE(c->start_all_reduce(g.data(), g.data(), 10, DataType::kFloat32, ReduceOp::kSum).is_ok());
      ASSERT_TRUE(c->wait_all().is_ok());
      ASSERT_TRUE(c->all_reduce(g.data(), g.data(), 10, DataType::kFloat32, ReduceOp::kSum).is_ok());
    }
    EXPECT_GT(dev.allocs, 0);
    EXPECT_EQ(dev.frees, dev.allocs);
  }
}

}  // namespace
}  // namespace perigee::collectives
