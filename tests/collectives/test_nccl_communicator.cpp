// NcclCommunicator under mpiexec.
// Everywhere (also without a GPU): create() failing with the same code on every rank instead of
// hanging (the helpers it decides with are tested in test_nccl_helpers.cpp).
// On GPUs: every collective, type and op on device buffers with exact expected values (#wrong = 0),
// in place and out of place, async mode, abort; and, when ranks share one GPU (np 2 on one H100),
// create() must refuse up front with kUnavailable on every rank, and raw ncclCommInitRank must
// report ncclInvalidUsage (the NCCL behaviour docs/collectives.md cites).
// Whether to skip is decided from data all ranks share (MPI_Allreduce / MPI_Allgather), so every rank
// skips the same tests and no rank is left waiting in a collective.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/bf16_reduce.hpp"
#include "collectives/gradient_buckets.hpp"
#include "collectives/nccl_communicator.hpp"
#include "tests/collectives/bf16_test_util.hpp"
#include "tests/collectives/cuda_test_util.hpp"

namespace perigee::collectives {
namespace {

// ---- the plan every rank agrees on

struct GpuPlan {
  bool all_have_gpu = false;  // identical on all ranks
  bool distinct = false;      // identical on all ranks: no two ranks on one GPU
  bool all_share = false;     // identical on all ranks: every rank shares its GPU with another
  int device = 0;             // this rank's device: local rank % device count
  std::string why;            // why there is no GPU run (this rank's view)
};

GpuPlan make_plan() {
  GpuPlan plan;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
    plan.why = std::string("no usable CUDA device: cudaGetDeviceCount returned ") + cudaGetErrorName(err);
  } else if (count == 0) {
    plan.why = "no CUDA device";
  }
  int have = count > 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  plan.all_have_gpu = all != 0;
  if (!plan.all_have_gpu) {
    if (have) plan.why = "another rank has no CUDA device";
    return plan;
  }
  MPI_Comm node;
  int local_rank = 0;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  plan.device = local_rank % count;

  // The same identity create() uses (host + PCI bus id), gathered so every rank sees one table.
  struct Record {
    char host[64];
    char bus[32];
  } mine{}, *all_records = nullptr;
  gethostname(mine.host, sizeof(mine.host) - 1);
  if (cudaDeviceGetPCIBusId(mine.bus, sizeof(mine.bus), plan.device) != cudaSuccess) (void)cudaGetLastError();
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  std::vector<Record> records(static_cast<size_t>(p));
  all_records = records.data();
  MPI_Allgather(&mine, sizeof(Record), MPI_BYTE, all_records, sizeof(Record), MPI_BYTE, MPI_COMM_WORLD);
  std::vector<GpuIdentity> ids(records.size());
  for (size_t r = 0; r < records.size(); ++r) {
    ids[r].host_hash = std::hash<std::string>{}(records[r].host);
    ids[r].host_name = records[r].host;
    ids[r].bus_id = records[r].bus;
  }
  plan.distinct = check_distinct_gpus(ids).is_ok();
  std::map<std::pair<uint64_t, std::string>, int> users;
  for (const GpuIdentity& g : ids) ++users[{g.host_hash, g.bus_id}];
  plan.all_share = std::all_of(ids.begin(), ids.end(), [&](const GpuIdentity& g) {
    return users[{g.host_hash, g.bus_id}] > 1;
  });
  return plan;
}

// Computed once, at the first test that asks (the same test on every rank).
const GpuPlan& plan() {
  static const GpuPlan p = make_plan();
  return p;
}

int comm_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int comm_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// All ranks got the same status code.
bool same_code_everywhere(const Status& s) {
  int code = static_cast<int>(s.code()), lo = 0, hi = 0;
  MPI_Allreduce(&code, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&code, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

// ---- everywhere: create() failing alike (the pure helpers: test_nccl_helpers.cpp)

// Without a GPU: kUnavailable on every rank; with one: an invalid device, kInvalidArgument on every
// rank. Either way create() returns instead of leaving a rank in a collective.
TEST(NcclCommunicatorCreate, FailsAlikeOnEveryRank) {
  std::unique_ptr<NcclCommunicator> c;
  if (!plan().all_have_gpu) {
    Status s = NcclCommunicator::create(MPI_COMM_WORLD, 0, nullptr, &c);
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
    EXPECT_TRUE(same_code_everywhere(s));
  } else {
    Status s = NcclCommunicator::create(MPI_COMM_WORLD, -1, nullptr, &c);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_TRUE(same_code_everywhere(s));
  }
  EXPECT_EQ(c, nullptr);
}

TEST(NcclCommunicatorCreate, RejectsABadDeadlineBeforeAnyCollective) {
  std::unique_ptr<NcclCommunicator> c;
  for (double bad : {-1.0, std::nan("")}) {
    Status s = NcclCommunicator::create(MPI_COMM_WORLD, 0, nullptr, &c, false, bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find("timeout_s"), std::string::npos) << s.message();
  }
  EXPECT_EQ(c, nullptr);
}

// ---- on GPUs

using test::DeviceVector;
using test::LateWrite;

class NcclOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    const GpuPlan& g = plan();
    if (!g.all_have_gpu) GTEST_SKIP() << g.why;
    if (!g.distinct) GTEST_SKIP() << "ranks share a GPU, which NCCL refuses (see SharedGpu tests)";
    PERIGEE_CHECK_OR_DIE(NcclCommunicator::create(MPI_COMM_WORLD, g.device, nullptr, &comm_));
  }
  std::unique_ptr<NcclCommunicator> comm_;
};

TEST_F(NcclOnGpu, IdentityMatchesMpi) {
  int r = -1, n = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  EXPECT_EQ(comm_->rank(), r);
  EXPECT_EQ(comm_->size(), n);
  EXPECT_STREQ(comm_->name(), "nccl");
  EXPECT_EQ(comm_->device(), plan().device);
  EXPECT_NE(comm_->stream(), nullptr);  // created and owned
  EXPECT_FALSE(comm_->async());
}

TEST_F(NcclOnGpu, AllReduceSumFloatAndIntOutOfPlaceAndInPlace) {
  const int p = comm_->size(), r = comm_->rank();
  const size_t n = 1 << 20;
  std::vector<float> hf(n);
  std::vector<int32_t> hi(n);
  for (size_t i = 0; i < n; ++i) {
    hf[i] = static_cast<float>((r + 1) * static_cast<int>(i % 97));
    hi[i] = (r + 1) * static_cast<int32_t>(i % 1000) - 500;
  }
  DeviceVector<float> f(hf), fout(std::vector<float>(n, -1.0f));
  DeviceVector<int32_t> in(hi), iout(std::vector<int32_t>(n, -1));
  ASSERT_TRUE(comm_->all_reduce(f.ptr, fout.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(comm_->all_reduce(f.ptr, f.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(comm_->all_reduce(in.ptr, iout.ptr, n, DataType::kInt32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(comm_->all_reduce(in.ptr, in.ptr, n, DataType::kInt32, ReduceOp::kSum).is_ok());
  const int rank_sum = p * (p + 1) / 2;
  const std::vector<float> a = fout.download(), b = f.download();
  const std::vector<int32_t> c = iout.download(), d = in.download();
  long wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const float ef = static_cast<float>(rank_sum * static_cast<int>(i % 97));
    const int32_t ei = rank_sum * static_cast<int32_t>(i % 1000) - 500 * p;
    wrong += (a[i] != ef) + (b[i] != ef) + (c[i] != ei) + (d[i] != ei);
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(NcclOnGpu, AllReduceAvgMaxMinAndEveryType) {
  const int p = comm_->size(), r = comm_->rank();
  const size_t n = 4099;
  // kAvg (ncclAvg): integer-valued inputs whose mean is an integer. NCCL may pre-multiply by 1/p,
  // which is exact only for p a power of two: otherwise allow 4 ulp.
  const bool exact = (p & (p - 1)) == 0;
  std::vector<float> hf(n);
  std::vector<double> hd(n);
  for (size_t i = 0; i < n; ++i) {
    hf[i] = static_cast<float>(2 * r + static_cast<int>(i % 300));
    hd[i] = static_cast<double>(2 * r) + static_cast<double>(i);
  }
  DeviceVector<float> f(hf);
  DeviceVector<double> d(hd);
  ASSERT_TRUE(comm_->all_reduce(f.ptr, f.ptr, n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  ASSERT_TRUE(comm_->all_reduce(d.ptr, d.ptr, n, DataType::kFloat64, ReduceOp::kAvg).is_ok());
  const std::vector<float> af = f.download();
  const std::vector<double> ad = d.download();
  long wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const float ef = static_cast<float>(p - 1 + static_cast<int>(i % 300));
    const double ed = static_cast<double>(p - 1) + static_cast<double>(i);
    if (exact) {
      wrong += (af[i] != ef) + (ad[i] != ed);
    } else {
      wrong += std::fabs(af[i] - ef) > 4 * std::fabs(ef) * 1.2e-7f;
      wrong += std::fabs(ad[i] - ed) > 4 * std::fabs(ed) * 2.3e-16;
    }
  }
  EXPECT_EQ(wrong, 0);

  std::vector<int32_t> hi(n);
  for (size_t i = 0; i < n; ++i) hi[i] = (i % 2 == 0 ? r : -r) * static_cast<int32_t>(i % 50 + 1);
  DeviceVector<int32_t> in(hi), mx(hi), mn(hi);
  ASSERT_TRUE(comm_->all_reduce(in.ptr, mx.ptr, n, DataType::kInt32, ReduceOp::kMax).is_ok());
  ASSERT_TRUE(comm_->all_reduce(in.ptr, mn.ptr, n, DataType::kInt32, ReduceOp::kMin).is_ok());
  const std::vector<int32_t> amx = mx.download(), amn = mn.download();
  wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t k = static_cast<int32_t>(i % 50 + 1);
    wrong += amx[i] != (i % 2 == 0 ? (p - 1) * k : 0);
    wrong += amn[i] != (i % 2 == 0 ? 0 : -(p - 1) * k);
  }
  EXPECT_EQ(wrong, 0);

  DeviceVector<int64_t> big(std::vector<int64_t>(n, (int64_t{1} << 40) + r));
  ASSERT_TRUE(comm_->all_reduce(big.ptr, big.ptr, n, DataType::kInt64, ReduceOp::kSum).is_ok());
  const std::vector<int64_t> abig = big.download();
  EXPECT_EQ(std::count(abig.begin(), abig.end(), p * (int64_t{1} << 40) + p * (p - 1) / 2),
            static_cast<long>(n));

  std::vector<uint8_t> hb(n);
  for (size_t i = 0; i < n; ++i) hb[i] = static_cast<uint8_t>((i + r * 7) % 251);
  DeviceVector<uint8_t> bytes(hb);
  ASSERT_TRUE(comm_->all_reduce(bytes.ptr, bytes.ptr, n, DataType::kUInt8, ReduceOp::kMax).is_ok());
  const std::vector<uint8_t> ab = bytes.download();
  wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    uint8_t e = 0;
    for (int q = 0; q < p; ++q) e = std::max(e, static_cast<uint8_t>((i + q * 7) % 251));
    wrong += ab[i] != e;
  }
  EXPECT_EQ(wrong, 0);
}

// bf16 (ncclBfloat16): NCCL adds in fp32 and rounds each partial sum to bf16, the rule of the
// host backends (collectives/bf16_reduce.hpp): exact small-integer sums, max/min, and on 2 ranks
// bf16(a + b) bit for bit.
TEST_F(NcclOnGpu, AllReduceBf16FollowsTheHostRule) {
  using namespace testing;
  const int p = comm_->size(), r = comm_->rank();
  const size_t n = 4099;
  DeviceVector<uint16_t> sum(rank_bf16(r, n, small_value));
  DeviceVector<uint16_t> mixed(rank_bf16(r, n, mixed_value)), mx(rank_bf16(r, n, mixed_value));
  DeviceVector<uint16_t> sum_for_avg(rank_bf16(r, n, mixed_value)), avg(rank_bf16(r, n, mixed_value));
  ASSERT_TRUE(comm_->all_reduce(sum.ptr, sum.ptr, n, DataType::kBFloat16, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(comm_->all_reduce(mx.ptr, mx.ptr, n, DataType::kBFloat16, ReduceOp::kMax).is_ok());
  ASSERT_TRUE(comm_->all_reduce(mixed.ptr, mixed.ptr, n, DataType::kBFloat16, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(
      comm_->all_reduce(sum_for_avg.ptr, sum_for_avg.ptr, n, DataType::kBFloat16, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(comm_->all_reduce(avg.ptr, avg.ptr, n, DataType::kBFloat16, ReduceOp::kAvg).is_ok());
  const std::vector<uint16_t> hs = sum.download(), hmx = mx.download(), hmixed = mixed.download();
  // The average is the sum, scaled once by 1/p and rounded once (every backend's rule).
  std::vector<uint16_t> expect_avg = sum_for_avg.download();
  if (p > 1) collectives::bf16_scale(expect_avg.data(), n, 1.0f / static_cast<float>(p));
  EXPECT_EQ(avg.download(), expect_avg);
  long wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    wrong += bf16_to_float(hs[i]) != small_sum(p, i);
    float hi = -2.0f;
    for (int q = 0; q < p; ++q) hi = std::max(hi, bf16_to_float(mixed_value(q, i)));
    wrong += bf16_to_float(hmx[i]) != hi;
    if (p == 1) wrong += hmixed[i] != mixed_value(0, i);
    if (p == 2) {
      wrong +=
          hmixed[i] != float_to_bf16(bf16_to_float(mixed_value(0, i)) + bf16_to_float(mixed_value(1, i)));
    }
  }
  EXPECT_EQ(wrong, 0);
}

// A stream that does not drain (here a host function holds the NCCL stream for 3 s, as a dead peer
// holds NCCL's kernel; no NCCL operation is queued behind it, so nothing runs on the aborted
// communicator): with timeout_s 0.3 the wait gives up, aborts the communicator and says so; later
// calls are refused. Every rank does the same locally, so no rank waits for another.
// ncclCommAbort frees pinned memory, which waits for the device and so for the host function here
// (a real stalled NCCL kernel exits on the abort flag): the deadline is checked on the give-up time
// the message reports, not on the whole call.
void CUDART_CB hold_stream(void*) {
  std::this_thread::sleep_for(std::chrono::seconds(3));
}

TEST_F(NcclOnGpu, TimeoutAbortsAStalledCollective) {
  EXPECT_EQ(comm_->set_timeout(-1.0).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(comm_->set_timeout(0.3).is_ok());
  ASSERT_EQ(cudaLaunchHostFunc(comm_->stream(), hold_stream, nullptr), cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  const Status s = comm_->synchronize();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(s.message().find("did not complete within 0.3 s"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("aborted"), std::string::npos) << s.message();
  EXPECT_GE(waited, 0.3);
  const std::regex gave_up("gave up after ([0-9]+) ms");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(s.message(), m, gave_up)) << s.message();
  const long gave_up_ms = std::stol(m[1].str());
  EXPECT_GE(gave_up_ms, 300);
  EXPECT_LT(gave_up_ms, 2500) << "the deadline must end the wait before the stream frees itself";
  EXPECT_TRUE(comm_->aborted());
  DeviceVector<float> v(std::vector<float>(4, 1.0f));
  EXPECT_EQ(comm_->all_reduce(v.ptr, v.ptr, 4, DataType::kFloat32, ReduceOp::kSum).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(cudaStreamSynchronize(comm_->stream()), cudaSuccess);  // the host function ends
}

TEST_F(NcclOnGpu, RejectsIntAvgAndBadRootWithoutCallingNccl) {
  DeviceVector<int32_t> v(std::vector<int32_t>(4, 1));
  Status s = comm_->all_reduce(v.ptr, v.ptr, 4, DataType::kInt32, ReduceOp::kAvg);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kAvg"), std::string::npos);
  EXPECT_EQ(comm_->broadcast(v.ptr, 4, DataType::kInt32, comm_->size()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm_->broadcast(v.ptr, 4, DataType::kInt32, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(comm_->barrier().is_ok());  // still usable
}

TEST_F(NcclOnGpu, BroadcastFromEveryRoot) {
  const int p = comm_->size(), r = comm_->rank();
  for (int root = 0; root < p; ++root) {
    std::vector<int64_t> hv(1000);
    std::vector<float> hf(333);
    for (size_t i = 0; i < hv.size(); ++i) hv[i] = r == root ? 1000 * root + static_cast<int64_t>(i) : -1;
    for (size_t i = 0; i < hf.size(); ++i) hf[i] = r == root ? static_cast<float>(root) + 0.25f * i : -1.0f;
    DeviceVector<int64_t> v(hv);
    DeviceVector<float> f(hf);
    ASSERT_TRUE(comm_->broadcast(v.ptr, v.n, DataType::kInt64, root).is_ok());
    ASSERT_TRUE(comm_->broadcast(f.ptr, f.n, DataType::kFloat32, root).is_ok());
    const std::vector<int64_t> av = v.download();
    const std::vector<float> af = f.download();
    long wrong = 0;
    for (size_t i = 0; i < av.size(); ++i) wrong += av[i] != 1000 * root + static_cast<int64_t>(i);
    for (size_t i = 0; i < af.size(); ++i) wrong += af[i] != static_cast<float>(root) + 0.25f * i;
    EXPECT_EQ(wrong, 0) << "root " << root;
  }
}

TEST_F(NcclOnGpu, AllGatherOutOfPlaceAndInPlace) {
  const int p = comm_->size(), r = comm_->rank();
  const size_t count = 12345;
  std::vector<float> mine(count);
  for (size_t i = 0; i < count; ++i) mine[i] = static_cast<float>(r * 100000 + static_cast<int>(i));
  DeviceVector<float> send(mine), out(std::vector<float>(count * p, -1.0f));
  ASSERT_TRUE(comm_->all_gather(send.ptr, out.ptr, count, DataType::kFloat32).is_ok());
  std::vector<float> in_place_h(count * p, -1.0f);
  std::copy(mine.begin(), mine.end(), in_place_h.begin() + r * count);
  DeviceVector<float> in_place(in_place_h);
  ASSERT_TRUE(comm_->all_gather(in_place.ptr + r * count, in_place.ptr, count, DataType::kFloat32).is_ok());
  const std::vector<float> a = out.download(), b = in_place.download();
  long wrong = 0;
  for (int q = 0; q < p; ++q) {
    for (size_t i = 0; i < count; ++i) {
      const float e = static_cast<float>(q * 100000 + static_cast<int>(i));
      wrong += (a[q * count + i] != e) + (b[q * count + i] != e);
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(NcclOnGpu, BarrierAndEmptyBuffers) {
  EXPECT_TRUE(comm_->barrier().is_ok());
  EXPECT_TRUE(comm_->all_reduce(nullptr, nullptr, 0, DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_TRUE(comm_->broadcast(nullptr, 0, DataType::kInt32, 0).is_ok());
  EXPECT_TRUE(comm_->all_gather(nullptr, nullptr, 0, DataType::kUInt8).is_ok());
  EXPECT_TRUE(comm_->synchronize().is_ok());
  EXPECT_TRUE(comm_->async_error().is_ok());
}

TEST_F(NcclOnGpu, AsyncModeEnqueuesOnTheCallersStream) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  {
    std::unique_ptr<NcclCommunicator> c;
    ASSERT_TRUE(NcclCommunicator::create(MPI_COMM_WORLD, plan().device, stream, &c, /*async=*/true).is_ok());
    EXPECT_TRUE(c->async());
    EXPECT_EQ(c->stream(), stream);
    const int p = c->size();
    const size_t n = 1 << 22;
    DeviceVector<float> v(std::vector<float>(n, 1.0f));
    std::vector<float> host(n, -1.0f);
    // Ordered on the stream: reduce twice, then copy back; nothing waits until the stream sync.
    ASSERT_TRUE(c->all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(c->all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_EQ(cudaMemcpyAsync(host.data(), v.ptr, n * sizeof(float), cudaMemcpyDeviceToHost, stream),
              cudaSuccess);
    ASSERT_TRUE(c->synchronize().is_ok());
    EXPECT_EQ(std::count(host.begin(), host.end(), static_cast<float>(p * p)), static_cast<long>(n));
    EXPECT_TRUE(c->barrier().is_ok());
  }
  cudaStreamDestroy(stream);
}

// Overlap: start_all_reduce only enqueues; wait_all() makes the results visible. Then
// GradientBuckets on a device buffer, cut at fixed ready points, must give the exact average.
TEST_F(NcclOnGpu, OverlappedAllReducesAndGradientBuckets) {
  EXPECT_TRUE(comm_->overlaps());
  const int p = comm_->size(), r = comm_->rank();
  const size_t n = 1 << 20;
  DeviceVector<float> a(std::vector<float>(n, static_cast<float>(2 * (r + 1))));
  DeviceVector<int32_t> m(std::vector<int32_t>(1000, r));
  // cudaMemcpy from pageable memory may return before its DMA lands; NCCL's stream is another one.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(comm_->start_all_reduce(a.ptr, a.ptr, n, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  ASSERT_TRUE(comm_->start_all_reduce(m.ptr, m.ptr, 1000, DataType::kInt32, ReduceOp::kMax).is_ok());
  ASSERT_TRUE(comm_->progress().is_ok());
  ASSERT_TRUE(comm_->wait_all().is_ok());
  const std::vector<float> ha = a.download();
  EXPECT_EQ(std::count(ha.begin(), ha.end(), static_cast<float>(p + 1)), static_cast<long>(n));
  const std::vector<int32_t> hm = m.download();
  EXPECT_EQ(std::count(hm.begin(), hm.end(), p - 1), 1000);

  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>((r + 1) * static_cast<int>(i % 7));
  DeviceVector<float> g(host);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  collectives::GradientBuckets buckets(comm_.get(), 256 << 10);  // 64 Ki floats per bucket
  ASSERT_TRUE(buckets.begin(g.ptr, n).is_ok());
  for (size_t first : {n - 1000, n - 100000, n / 2, size_t{12345}, size_t{0}}) {
    ASSERT_TRUE(buckets.ready_from(first).is_ok());
  }
  ASSERT_TRUE(buckets.finish().is_ok());
  EXPECT_EQ(buckets.buckets(), p > 1 ? 4 : 0);
  const std::vector<float> hg = g.download();
  long wrong = 0;
  const float rank_sum = static_cast<float>(p * (p + 1) / 2);
  for (size_t i = 0; i < n; ++i) {
    // NCCL's ncclAvg of small integers: exact sum, then one division by p (tolerance for the rounding).
    const float want = rank_sum * static_cast<float>(i % 7) / static_cast<float>(p);
    wrong += std::fabs(hg[i] - want) > 1e-6f * std::fabs(want);
  }
  EXPECT_EQ(wrong, 0);
}

// With a producer stream, every call waits (on the device) for the work queued on it so far: a
// write that lands there only after a 300 ms pause is what the collective reads, with no host wait.
TEST_F(NcclOnGpu, ProducerStreamOrdersEveryCallAfterItsQueuedWork) {
  const int p = comm_->size(), r = comm_->rank();
  EXPECT_FALSE(comm_->follows_producer_stream());
  cudaStream_t producer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&producer, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_TRUE(comm_->set_producer_stream(producer).is_ok());
  EXPECT_TRUE(comm_->follows_producer_stream());
  const size_t n = 1 << 18;
  const std::vector<float> late(n, static_cast<float>(r + 1));
  long wrong = 0;
  {  // blocking all_reduce
    DeviceVector<float> v(std::vector<float>(n, -1000.0f)), out(std::vector<float>(n, 0.0f));
    LateWrite<float> w(producer, v.ptr, late, 300);
    ASSERT_TRUE(comm_->all_reduce(v.ptr, out.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    const std::vector<float> h = out.download();
    wrong +=
        std::count_if(h.begin(), h.end(), [&](float x) { return x != static_cast<float>(p * (p + 1) / 2); });
  }
  {  // overlapped all_reduce
    DeviceVector<float> v(std::vector<float>(n, -1000.0f));
    LateWrite<float> w(producer, v.ptr, late, 300);
    ASSERT_TRUE(comm_->start_all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(comm_->wait_all().is_ok());
    const std::vector<float> h = v.download();
    wrong +=
        std::count_if(h.begin(), h.end(), [&](float x) { return x != static_cast<float>(p * (p + 1) / 2); });
  }
  {  // broadcast from the last rank
    DeviceVector<float> v(std::vector<float>(n, -1000.0f));
    LateWrite<float> w(producer, v.ptr, late, 300);
    ASSERT_TRUE(comm_->broadcast(v.ptr, n, DataType::kFloat32, p - 1).is_ok());
    const std::vector<float> h = v.download();
    wrong += std::count_if(h.begin(), h.end(), [&](float x) { return x != static_cast<float>(p); });
  }
  EXPECT_EQ(wrong, 0);
  ASSERT_TRUE(comm_->set_producer_stream(nullptr).is_ok());
  EXPECT_FALSE(comm_->follows_producer_stream());
  ASSERT_TRUE(comm_->set_producer_stream(comm_->stream()).is_ok());  // its own stream: ordered, no event
  EXPECT_TRUE(comm_->follows_producer_stream());
  cudaStreamDestroy(producer);
}

TEST_F(NcclOnGpu, AbortMakesLaterCallsUnavailable) {
  ASSERT_TRUE(comm_->abort().is_ok());
  EXPECT_TRUE(comm_->aborted());
  DeviceVector<float> v(std::vector<float>(8, 1.0f));
  Status s = comm_->all_reduce(v.ptr, v.ptr, 8, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("aborted"), std::string::npos);
  EXPECT_EQ(comm_->barrier().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(comm_->abort().is_ok());  // idempotent; the destructor has nothing left to free
}

// close() finalizes after the queued work (an async all-reduce still on the stream completes first)
// and reports success on every rank; later calls are refused, and a second close() is a no-op.
TEST_F(NcclOnGpu, CloseFinalizesQueuedWorkAndEndsTheCommunicator) {
  std::unique_ptr<NcclCommunicator> c;
  ASSERT_TRUE(NcclCommunicator::create(MPI_COMM_WORLD, plan().device, nullptr, &c, /*async=*/true).is_ok());
  const size_t n = 1 << 20;
  DeviceVector<float> v(std::vector<float>(n, 1.0f));
  ASSERT_TRUE(c->all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  const Status closed = c->close();
  ASSERT_TRUE(closed.is_ok()) << closed.message();
  EXPECT_TRUE(c->aborted());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got = v.download();
  EXPECT_EQ(got.front(), static_cast<float>(c->size()));
  EXPECT_EQ(got.back(), static_cast<float>(c->size()));
  const Status later = c->all_reduce(v.ptr, v.ptr, 8, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(later.code(), StatusCode::kUnavailable);
  EXPECT_NE(later.message().find("closed"), std::string::npos) << later.message();
  EXPECT_TRUE(c->close().is_ok());
}

// ---- ranks sharing one GPU (e.g. np 2 on one H100)

class SharedGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    const GpuPlan& g = plan();
    if (!g.all_have_gpu) GTEST_SKIP() << g.why;
    if (g.distinct) GTEST_SKIP() << "every rank has its own GPU";
    // The same on every rank only if the launcher exports it everywhere (mpiexec -x does).
    const char* multi = std::getenv("NCCL_MULTI_RANK_GPU_ENABLE");
    if (multi != nullptr && std::strcmp(multi, "1") == 0) {
      GTEST_SKIP() << "NCCL_MULTI_RANK_GPU_ENABLE=1 is set: NCCL >= 2.30 may accept shared GPUs";
    }
  }
};

TEST_F(SharedGpu, CreateRefusesUpFrontOnEveryRank) {
  std::unique_ptr<NcclCommunicator> c;
  Status s = NcclCommunicator::create(MPI_COMM_WORLD, plan().device, nullptr, &c);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_TRUE(same_code_everywhere(s));
  EXPECT_NE(s.message().find("share GPU"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("MPI backend with host staging"), std::string::npos);
  if (comm_size() == 2) {
    EXPECT_NE(s.message().find("ranks 0 and 1 share GPU"), std::string::npos) << s.message();
  }
  EXPECT_EQ(c, nullptr);
  if (comm_rank() == 0) std::printf("[ message ] %s\n", s.message().c_str());
}

// What NCCL itself does without our check (docs/collectives.md): after its first bootstrap
// all-gather, ncclCommInitRank returns ncclInvalidUsage with "Duplicate GPU detected" (2.5.6 to
// 2.29, on each rank that shares a GPU) or "Multiple Ranks are using the same GPU" (2.30.7 on, on
// every rank). Not run where a rank would go on and wait for the failed ones: when some rank has a
// GPU of its own (< 2.30), or with 2.30.3/2.30.4, where only the first rank of the host fails.
TEST_F(SharedGpu, RawNcclInitRankReportsInvalidUsage) {
  int version = 0;
  ncclGetVersion(&version);
  int lo = 0, hi = 0;
  MPI_Allreduce(&version, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&version, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (lo != hi) GTEST_SKIP() << "ranks run different NCCL versions";
  if (version >= 23000 && version < 23007)
    GTEST_SKIP() << "NCCL " << version << " fails only the host's first rank";
  if (version < 23000 && !plan().all_share) GTEST_SKIP() << "some rank has a GPU of its own";
  // No early return before the collectives below: every rank must reach them.
  EXPECT_EQ(cudaSetDevice(plan().device), cudaSuccess);
  ncclUniqueId id{};
  int id_result = ncclSuccess;
  if (comm_rank() == 0) id_result = ncclGetUniqueId(&id);
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  MPI_Bcast(&id_result, 1, MPI_INT, 0, MPI_COMM_WORLD);
  ASSERT_EQ(id_result, ncclSuccess);  // the same on every rank
  ncclComm_t comm = nullptr;
  const ncclResult_t res = ncclCommInitRank(&comm, comm_size(), id, comm_rank());
  const std::string last = ncclGetLastError(nullptr);
  if (comm != nullptr) (void)ncclCommAbort(comm);
  if (comm_rank() == 0)
    std::printf("[ nccl    ] version %d: %s (%d); last error: %s\n", version, ncclGetErrorString(res),
                static_cast<int>(res), last.c_str());
  EXPECT_EQ(res, ncclInvalidUsage);
  const char* expected = version < 23000 ? "Duplicate GPU detected" : "Multiple Ranks are using the same GPU";
  EXPECT_NE(last.find(expected), std::string::npos) << last;
}

}  // namespace
}  // namespace perigee::collectives
