// Overlapped all-reduce (Communicator::start_all_reduce / progress / wait_all) on the MPI backend and
// GradientBuckets over it, on 1-3 real MPI ranks. Values are small integers, so every sum is exact
// and the averages must equal sum * (1/p) bit for bit.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "collectives/gradient_buckets.hpp"
#include "collectives/mpi_communicator.hpp"
#include "core/bf16.hpp"
#include "tests/collectives/bf16_test_util.hpp"

namespace perigee::collectives {
namespace {

std::unique_ptr<MpiCommunicator> world(double timeout_s = 0.0) {
  std::unique_ptr<MpiCommunicator> c;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &c, timeout_s));
  return c;
}

// Rank r's value at i, and the exact sum over p ranks.
float value(int r, size_t i) {
  return static_cast<float>((r + 1) * static_cast<int>(i % 13) - 6);
}
float sum_over_ranks(int p, size_t i) {
  float s = 0.0f;
  for (int r = 0; r < p; ++r) s += value(r, i);
  return s;
}

std::vector<float> rank_values(int r, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(r, i);
  return v;
}

// Elements of `got` that differ from the average over p ranks.
int wrong_averages(const std::vector<float>& got, int p) {
  const float inv = 1.0f / static_cast<float>(p);
  int wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != (p > 1 ? sum_over_ranks(p, i) * inv : value(0, i));
  return wrong;
}

TEST(OverlappedAllReduce, SeveralStartedThenWaitedGiveExactResults) {
  for (double timeout : {0.0, 30.0}) {
    auto c = world(timeout);
    ASSERT_TRUE(c->overlaps());
    const int p = c->size(), r = c->rank();
    std::vector<float> a = rank_values(r, 5000);
    std::vector<float> b_send = rank_values(r, 777), b(777, -1.0f);
    std::vector<int32_t> m = {r, -r, 3 * r};
    ASSERT_TRUE(
        c->start_all_reduce(a.data(), a.data(), a.size(), DataType::kFloat32, ReduceOp::kAvg).is_ok());
    ASSERT_TRUE(
        c->start_all_reduce(b_send.data(), b.data(), b.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(c->start_all_reduce(m.data(), m.data(), m.size(), DataType::kInt32, ReduceOp::kMax).is_ok());
    EXPECT_EQ(c->pending(), 3u);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(c->progress().is_ok());
    ASSERT_TRUE(c->wait_all().is_ok());
    EXPECT_EQ(c->pending(), 0u);
    EXPECT_EQ(wrong_averages(a, p), 0) << "timeout " << timeout;
    int wrong = 0;
    for (size_t i = 0; i < b.size(); ++i) wrong += b[i] != sum_over_ranks(p, i);
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(m, (std::vector<int32_t>{p - 1, 0, 3 * (p - 1)}));
    // wait_all with nothing started is a no-op.
    ASSERT_TRUE(c->wait_all().is_ok());
  }
}

TEST(OverlappedAllReduce, ChunkedBuffersAndAvgOfIntegersRefused) {
  auto c = world();
  ASSERT_TRUE(c->set_chunk_elements(100).is_ok());
  const int p = c->size();
  std::vector<float> a = rank_values(c->rank(), 1234);  // 13 chunks, the last one partial
  ASSERT_TRUE(c->start_all_reduce(a.data(), a.data(), a.size(), DataType::kFloat32, ReduceOp::kAvg).is_ok());
  ASSERT_TRUE(c->wait_all().is_ok());
  EXPECT_EQ(wrong_averages(a, p), 0);
  int32_t x = 1;
  Status s = c->start_all_reduce(&x, &x, 1, DataType::kInt32, ReduceOp::kAvg);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  ASSERT_TRUE(c->wait_all().is_ok());
}

TEST(OverlappedAllReduce, OtherCollectivesRefusedWhilePending) {
  auto c = world();
  std::vector<float> a = rank_values(c->rank(), 64);
  ASSERT_TRUE(c->start_all_reduce(a.data(), a.data(), a.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
  double d = 1.0;
  for (Status s : {c->all_reduce(&d, &d, 1, DataType::kFloat64, ReduceOp::kSum), c->barrier(),
                   c->broadcast(&d, 1, DataType::kFloat64, 0)}) {
    EXPECT_EQ(s.code(), StatusCode::kInternal) << s.to_string();
    EXPECT_NE(s.message().find("call wait_all() first"), std::string::npos) << s.message();
  }
  ASSERT_TRUE(c->wait_all().is_ok());
  ASSERT_TRUE(c->barrier().is_ok());
}

// A backward pass that finalises a buffer of 1000 elements from its end in five steps.
struct Pass {
  std::vector<size_t> ready_points = {950, 700, 640, 100, 0};
};

TEST(GradientBuckets, BucketsFollowTheReadyPointsAndAverageExactly) {
  auto c = world();
  const int p = c->size();
  // 256 floats per bucket: [950,1000) is 50 (waits), [700,1000) 300 -> bucket 1, [640,700) 60
  // (waits), [100,700) 600 -> bucket 2, [0,100) at ready_from(0) is 100 (waits for finish) -> 3.
  GradientBuckets buckets(c.get(), 256 * sizeof(float));
  EXPECT_EQ(buckets.overlapping(), p > 1);
  for (int pass = 0; pass < 2; ++pass) {  // the same object serves pass after pass
    std::vector<float> g = rank_values(c->rank(), 1000);
    ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
    for (size_t first : Pass{}.ready_points) ASSERT_TRUE(buckets.ready_from(first).is_ok());
    ASSERT_TRUE(buckets.finish().is_ok());
    EXPECT_EQ(wrong_averages(g, p), 0);
    EXPECT_EQ(buckets.buckets(), p > 1 ? 3 : 0);
    EXPECT_GE(buckets.wait_seconds(), 0.0);
  }
}

// A pass given up before finish() (the backward pass failed) leaves buckets in flight: destroying the
// GradientBuckets waits for them, so the buffer's owner may free it and the communicator serves the
// next collective.
TEST(GradientBuckets, DestroyedMidPassWaitsForItsBuckets) {
  auto c = world(30.0);
  const int p = c->size();
  std::vector<float> g = rank_values(c->rank(), 1000);
  {
    GradientBuckets buckets(c.get(), 256 * sizeof(float));
    ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
    ASSERT_TRUE(buckets.ready_from(700).is_ok());  // [700, 1000) goes out
    EXPECT_EQ(buckets.buckets(), p > 1 ? 1 : 0);
  }
  EXPECT_EQ(c->pending(), 0u);
  for (size_t i = 700; i < 1000; ++i)
    ASSERT_EQ(g[i], p > 1 ? sum_over_ranks(p, i) * (1.0f / static_cast<float>(p)) : value(0, i)) << i;
  int32_t one = 1;
  ASSERT_TRUE(c->all_reduce(&one, &one, 1, DataType::kInt32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(one, p);
}

TEST(GradientBuckets, ZeroBucketBytesIsOneAllReduceAfterTheBackward) {
  auto c = world();
  const int p = c->size();
  GradientBuckets buckets(c.get(), 0);
  EXPECT_FALSE(buckets.overlapping());
  std::vector<float> g = rank_values(c->rank(), 1000);
  ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
  for (size_t first : Pass{}.ready_points) ASSERT_TRUE(buckets.ready_from(first).is_ok());
  // Nothing went out during the "backward": the buffer is still this rank's own.
  EXPECT_EQ(g, rank_values(c->rank(), 1000));
  ASSERT_TRUE(buckets.finish().is_ok());
  EXPECT_EQ(wrong_averages(g, p), 0);
  EXPECT_EQ(buckets.buckets(), p > 1 ? 1 : 0);
}

TEST(GradientBuckets, SameResultAsOneBlockingAllReduceForAnyBucketSize) {
  auto c = world();
  std::vector<float> reference = rank_values(c->rank(), 1000);
  ASSERT_TRUE(
      c->all_reduce(reference.data(), reference.data(), 1000, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  for (size_t bytes : {size_t{4}, size_t{400}, size_t{4000}, size_t{1} << 20}) {
    GradientBuckets buckets(c.get(), bytes);
    std::vector<float> g = rank_values(c->rank(), 1000);
    ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
    for (size_t first = 1000; first-- > 0;) {
      if (first % 37 != 0) continue;
      ASSERT_TRUE(buckets.ready_from(first).is_ok());
    }
    ASSERT_TRUE(buckets.finish().is_ok());
    EXPECT_EQ(g, reference) << bytes << " bytes per bucket";
  }
}

TEST(GradientBuckets, MisuseIsAnInternalError) {
  auto c = world();
  GradientBuckets buckets(c.get(), 64);
  std::vector<float> g(100, 1.0f);
  EXPECT_EQ(buckets.ready_from(0).code(), StatusCode::kInternal);
  EXPECT_EQ(buckets.finish().code(), StatusCode::kInternal);
  ASSERT_TRUE(buckets.begin(g.data(), g.size()).is_ok());
  EXPECT_EQ(buckets.begin(g.data(), g.size()).code(), StatusCode::kInternal);
  ASSERT_TRUE(buckets.ready_from(50).is_ok());
  Status up = buckets.ready_from(60);
  EXPECT_EQ(up.code(), StatusCode::kInternal);
  EXPECT_NE(up.message().find("only moves down"), std::string::npos) << up.message();
  ASSERT_TRUE(buckets.finish().is_ok());
  GradientBuckets none(nullptr, 64);
  EXPECT_EQ(none.begin(g.data(), g.size()).code(), StatusCode::kInvalidArgument);
}

// A host codec for the bf16 wire (what the trainer does through the backend's to_bf16/from_bf16),
// counting its calls.
struct HostCodec {
  std::vector<uint16_t> wire;
  int encodes = 0, decodes = 0, syncs = 0;
  Bf16WireCodec codec(size_t n) {
    wire.assign(n, 0xFFFF);
    Bf16WireCodec c;
    c.wire = wire.data();
    c.encode = [this](uint16_t* dst, const float* src, size_t k) {
      ++encodes;
      for (size_t i = 0; i < k; ++i) dst[i] = float_to_bf16(src[i]);
      return Status::ok();
    };
    c.decode = [this](float* dst, const uint16_t* src, float scale, size_t k) {
      ++decodes;
      for (size_t i = 0; i < k; ++i) dst[i] = bf16_to_float(src[i]) * scale;
      return Status::ok();
    };
    c.synchronize = [this] {
      ++syncs;
      return Status::ok();
    };
    return c;
  }
};

// bf16 on the wire: each bucket is rounded, summed as bf16 and widened back times 1/p. With the
// small integers of bf16_test_util the sums are exact, so the result is float(sum) * (1/p) for any
// bucket size, bit for bit; on one rank nothing is rounded or sent.
TEST(GradientBuckets, Bf16WireAveragesExactSumsForAnyBucketSize) {
  using namespace testing;
  auto c = world();
  const int p = c->size(), r = c->rank();
  const size_t n = 1000;
  for (size_t bytes : {size_t{0}, size_t{400}, size_t{1} << 20}) {
    HostCodec host;
    GradientBuckets buckets(c.get(), bytes);
    ASSERT_TRUE(buckets.set_bf16_wire(host.codec(n)).is_ok());
    EXPECT_EQ(buckets.wire_type(), DataType::kBFloat16);
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = bf16_to_float(small_value(r, i));
    const std::vector<float> mine = g;
    ASSERT_TRUE(buckets.begin(g.data(), n).is_ok());
    for (size_t first : Pass{}.ready_points) ASSERT_TRUE(buckets.ready_from(first).is_ok());
    ASSERT_TRUE(buckets.finish().is_ok());
    if (p == 1) {
      EXPECT_EQ(g, mine);
      EXPECT_EQ(host.encodes + host.decodes, 0);
      continue;
    }
    int wrong = 0;
    for (size_t i = 0; i < n; ++i) wrong += g[i] != small_sum(p, i) * (1.0f / static_cast<float>(p));
    EXPECT_EQ(wrong, 0) << bytes << " bytes per bucket";
    EXPECT_EQ(host.encodes, buckets.buckets());
    EXPECT_EQ(host.syncs, buckets.buckets());
    EXPECT_EQ(host.decodes, 1);  // the whole buffer once, after every bucket arrived
  }
}

// Values that are not bf16 are rounded before they go out: on 2 ranks every element is
// bf16(bf16(a) + bf16(b)) / 2, whatever the buckets.
TEST(GradientBuckets, Bf16WireRoundsWhatItSends) {
  auto c = world();
  if (c->size() != 2) GTEST_SKIP() << "the exact rounding check needs 2 ranks";
  const size_t n = 1000;
  auto value = [](int r, size_t i) {
    return std::sin(0.37f * static_cast<float>(i) + static_cast<float>(r));
  };
  for (size_t bytes : {size_t{0}, size_t{400}}) {
    HostCodec host;
    GradientBuckets buckets(c.get(), bytes);
    ASSERT_TRUE(buckets.set_bf16_wire(host.codec(n)).is_ok());
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = value(c->rank(), i);
    ASSERT_TRUE(buckets.begin(g.data(), n).is_ok());
    for (size_t first : Pass{}.ready_points) ASSERT_TRUE(buckets.ready_from(first).is_ok());
    ASSERT_TRUE(buckets.finish().is_ok());
    int wrong = 0;
    for (size_t i = 0; i < n; ++i) {
      const float a = bf16_to_float(float_to_bf16(value(0, i))),
                  b = bf16_to_float(float_to_bf16(value(1, i)));
      wrong += g[i] != bf16_to_float(float_to_bf16(a + b)) * 0.5f;
    }
    EXPECT_EQ(wrong, 0) << bytes << " bytes per bucket";
  }
}

TEST(GradientBuckets, Bf16WireNeedsACompleteCodec) {
  auto c = world();
  GradientBuckets buckets(c.get(), 64);
  HostCodec host;
  Bf16WireCodec codec = host.codec(10);
  codec.synchronize = nullptr;
  EXPECT_EQ(buckets.set_bf16_wire(codec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(buckets.wire_type(), DataType::kFloat32);
  codec = host.codec(10);
  codec.wire = nullptr;
  EXPECT_EQ(buckets.set_bf16_wire(codec).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::collectives
