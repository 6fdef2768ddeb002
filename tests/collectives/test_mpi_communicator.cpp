// MpiCommunicator on 1-4 real MPI ranks: exact results for every collective, type and op
// (integer-valued floats so sums are exact), in place and out of place.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "collectives/mpi_communicator.hpp"
#include "tests/collectives/bf16_test_util.hpp"

namespace perigee::collectives {
namespace {

std::unique_ptr<MpiCommunicator> world() {
  std::unique_ptr<MpiCommunicator> c;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &c));
  return c;
}

TEST(MpiCommunicator, RankAndSizeMatchMpi) {
  auto c = world();
  int r = -1, n = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  EXPECT_EQ(c->rank(), r);
  EXPECT_EQ(c->size(), n);
  EXPECT_STREQ(c->name(), "mpi");
}

TEST(MpiCommunicator, AllReduceSumFloatOutOfPlaceAndInPlace) {
  auto c = world();
  const int p = c->size(), r = c->rank();
  const size_t n = 1000;
  std::vector<float> send(n), recv(n, -1.0f);
  for (size_t i = 0; i < n; ++i) send[i] = static_cast<float>((r + 1) * static_cast<int>(i % 97));
  ASSERT_TRUE(c->all_reduce(send.data(), recv.data(), n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  const int rank_sum = p * (p + 1) / 2;
  int wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += recv[i] != static_cast<float>(rank_sum * static_cast<int>(i % 97));
  EXPECT_EQ(wrong, 0);
  ASSERT_TRUE(c->all_reduce(send.data(), send.data(), n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(send, recv);
}

TEST(MpiCommunicator, AllReduceMaxMinInt) {
  auto c = world();
  const int p = c->size(), r = c->rank();
  std::vector<int32_t> v = {r, -r, r * 10};
  std::vector<int32_t> mx(3), mn(3);
  ASSERT_TRUE(c->all_reduce(v.data(), mx.data(), 3, DataType::kInt32, ReduceOp::kMax).is_ok());
  ASSERT_TRUE(c->all_reduce(v.data(), mn.data(), 3, DataType::kInt32, ReduceOp::kMin).is_ok());
  EXPECT_EQ(mx, (std::vector<int32_t>{p - 1, 0, (p - 1) * 10}));
  EXPECT_EQ(mn, (std::vector<int32_t>{0, -(p - 1), 0}));
}

// fp32 and fp64 max and min are NaN when any rank holds a NaN (MPI_MAX left that to Open MPI, which
// dropped it), and +0/-0 give max +0 and min -0 on every rank; the same rule as the links and bf16.
TEST(MpiCommunicator, FloatMaxMinPropagateNaNAndAgreeOnSignedZeros) {
  auto c = world();
  const int p = c->size(), r = c->rank();
  for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kMin}) {
    std::vector<float> f(5, r == p - 1 ? std::nanf("") : 1.0f);
    f[0] = r == 0 ? -1.0f : std::nanf("");  // a NaN in the position too, when p > 1
    ASSERT_TRUE(c->all_reduce(f.data(), f.data(), f.size(), DataType::kFloat32, op).is_ok());
    for (size_t i = p > 1 ? 0 : 1; i < f.size(); ++i) EXPECT_TRUE(std::isnan(f[i])) << "p " << p;
    std::vector<double> d = {r == 0 ? -0.0 : 0.0, r == p - 1 ? -0.0 : 0.0, static_cast<double>(r)};
    ASSERT_TRUE(c->all_reduce(d.data(), d.data(), d.size(), DataType::kFloat64, op).is_ok());
    const bool want_negative_zero = op == ReduceOp::kMin || p == 1;
    EXPECT_EQ(std::signbit(d[0]), want_negative_zero);
    EXPECT_EQ(std::signbit(d[1]), want_negative_zero);
    EXPECT_EQ(d[2], op == ReduceOp::kMax ? p - 1 : 0);
  }
}

TEST(MpiCommunicator, AllReduceAvgDoubleAndRejectsIntAvg) {
  auto c = world();
  const int p = c->size();
  double x = static_cast<double>(c->rank()) * 2.0;
  ASSERT_TRUE(c->all_reduce(&x, &x, 1, DataType::kFloat64, ReduceOp::kAvg).is_ok());
  EXPECT_DOUBLE_EQ(x, static_cast<double>(p - 1));
  int32_t i = 1;
  Status s = c->all_reduce(&i, &i, 1, DataType::kInt32, ReduceOp::kAvg);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kAvg"), std::string::npos);
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto c = world();
  for (int root = 0; root < c->size(); ++root) {
    std::vector<int64_t> v(17, c->rank() == root ? 1000 + root : -1);
    ASSERT_TRUE(c->broadcast(v.data(), v.size(), DataType::kInt64, root).is_ok());
    for (int64_t x : v) EXPECT_EQ(x, 1000 + root);
  }
  uint8_t b = 0;
  EXPECT_EQ(c->broadcast(&b, 1, DataType::kUInt8, c->size()).code(), StatusCode::kInvalidArgument);
}

TEST(MpiCommunicator, AllGatherPlacesBlocksByRank) {
  for (double timeout : {0.0, 30.0}) {  // blocking and nonblocking paths
    std::unique_ptr<MpiCommunicator> c;
    ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &c, timeout).is_ok());
    const int p = c->size();
    std::vector<float> mine = {static_cast<float>(c->rank()), static_cast<float>(c->rank()) + 0.5f};
    std::vector<float> all(2 * p, -1.0f);
    ASSERT_TRUE(c->all_gather(mine.data(), all.data(), 2, DataType::kFloat32).is_ok());
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(all[2 * r], static_cast<float>(r));
      EXPECT_EQ(all[2 * r + 1], static_cast<float>(r) + 0.5f);
    }
    // In place: this rank's block already sits in recv (MPI_IN_PLACE underneath).
    std::vector<float> in_place(2 * p, -1.0f);
    in_place[2 * c->rank()] = static_cast<float>(c->rank());
    in_place[2 * c->rank() + 1] = static_cast<float>(c->rank()) + 0.5f;
    ASSERT_TRUE(
        c->all_gather(in_place.data() + 2 * c->rank(), in_place.data(), 2, DataType::kFloat32).is_ok());
    EXPECT_EQ(in_place, all) << "timeout " << timeout;
    EXPECT_TRUE(c->barrier().is_ok());
  }
}

// bf16 (MPI has no such type: user-defined ops over 16-bit words) through the blocking and the
// nonblocking (timeout) paths, several chunks: exact integer sums, max/min, averages rounded once
// after the sum, and on 2 ranks every rounded sum is bf16(a + b).
TEST(MpiCommunicator, AllReduceBf16SumMaxMinAvg) {
  using namespace testing;
  for (double timeout : {0.0, 30.0}) {
    auto c = world();
    ASSERT_TRUE(c->set_timeout(timeout).is_ok());
    ASSERT_TRUE(c->set_chunk_elements(700).is_ok());
    const int p = c->size(), r = c->rank();
    const size_t n = 2000;
    const std::vector<uint16_t> small = rank_bf16(r, n, small_value);
    std::vector<uint16_t> sum(n), avg(small), mx(n), mn(n);
    ASSERT_TRUE(c->all_reduce(small.data(), sum.data(), n, DataType::kBFloat16, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(c->all_reduce(avg.data(), avg.data(), n, DataType::kBFloat16, ReduceOp::kAvg).is_ok());
    const std::vector<uint16_t> mixed = rank_bf16(r, n, mixed_value);
    ASSERT_TRUE(c->all_reduce(mixed.data(), mx.data(), n, DataType::kBFloat16, ReduceOp::kMax).is_ok());
    ASSERT_TRUE(c->all_reduce(mixed.data(), mn.data(), n, DataType::kBFloat16, ReduceOp::kMin).is_ok());
    int wrong = 0;
    for (size_t i = 0; i < n; ++i) {
      const float s = small_sum(p, i);
      wrong += bf16_to_float(sum[i]) != s;
      wrong += avg[i] != float_to_bf16(s * (1.0f / static_cast<float>(p)));
      float hi = -2.0f, lo = 2.0f;
      for (int q = 0; q < p; ++q) {
        hi = std::max(hi, bf16_to_float(mixed_value(q, i)));
        lo = std::min(lo, bf16_to_float(mixed_value(q, i)));
      }
      wrong += bf16_to_float(mx[i]) != hi;
      wrong += bf16_to_float(mn[i]) != lo;
    }
    EXPECT_EQ(wrong, 0) << "timeout " << timeout;

    std::vector<uint16_t> rounded(mixed);
    ASSERT_TRUE(
        c->all_reduce(rounded.data(), rounded.data(), n, DataType::kBFloat16, ReduceOp::kSum).is_ok());
    wrong = 0;
    for (size_t i = 0; i < n; ++i) {
      double exact = 0.0, mag = 0.0;
      for (int q = 0; q < p; ++q) {
        exact += bf16_to_float(mixed_value(q, i));
        mag += std::fabs(bf16_to_float(mixed_value(q, i)));
      }
      if (p == 2) {
        wrong +=
            rounded[i] != float_to_bf16(bf16_to_float(mixed_value(0, i)) + bf16_to_float(mixed_value(1, i)));
      } else {
        // p - 1 roundings of at most half a bf16 step (2^-8 relative) of partial sums <= mag.
        wrong += std::fabs(bf16_to_float(rounded[i]) - exact) > (p - 1) * mag / 256.0;
      }
    }
    EXPECT_EQ(wrong, 0) << "timeout " << timeout;
  }
}

}  // namespace
}  // namespace perigee::collectives
