// HostStagingCommunicator over a real MpiCommunicator on 1-3 ranks. Its logic runs here for real:
// "device" buffers are host memory and the callbacks memcpy while counting calls and allocations,
// so chunking (small chunk sizes, counts that are no multiple of the chunk), in-place and
// out-of-place, the bounded staging buffer and error propagation are all checked on the CPU.
// The last test runs the CUDA callbacks (cudaMallocHost/cudaMemcpy) on device buffers, blocking and
// overlapped; it skips, on every rank alike, unless every rank has a GPU (ranks may share one:
// staging needs no NCCL).
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "collectives/cuda_staging.hpp"
#include "collectives/mpi_communicator.hpp"
#include "collectives/staging_communicator.hpp"
#include "tests/collectives/bf16_test_util.hpp"
#include "tests/collectives/cuda_test_util.hpp"
#include "tests/collectives/fake_device.hpp"

namespace perigee::collectives {
namespace {

std::shared_ptr<MpiCommunicator> world() {
  std::unique_ptr<MpiCommunicator> c;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &c));
  return std::shared_ptr<MpiCommunicator>(std::move(c));
}

std::unique_ptr<HostStagingCommunicator> staged(FakeDevice* dev, size_t chunk_bytes) {
  std::unique_ptr<HostStagingCommunicator> c;
  PERIGEE_CHECK_OR_DIE(HostStagingCommunicator::create(world(), dev->callbacks(), &c, chunk_bytes));
  return c;
}

TEST(HostStagingCommunicator, CreateValidatesArguments) {
  FakeDevice dev;
  std::unique_ptr<HostStagingCommunicator> c;
  EXPECT_EQ(HostStagingCommunicator::create(nullptr, dev.callbacks(), &c).code(),
            StatusCode::kInvalidArgument);
  StagingCallbacks missing = dev.callbacks();
  missing.to_device = nullptr;
  EXPECT_EQ(HostStagingCommunicator::create(world(), missing, &c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HostStagingCommunicator::create(world(), dev.callbacks(), &c, 4).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(HostStagingCommunicator::create(world(), dev.callbacks(), &c).is_ok());
  EXPECT_STREQ(c->name(), "mpi+staging");
  int r = -1, n = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  EXPECT_EQ(c->rank(), r);
  EXPECT_EQ(c->size(), n);
  EXPECT_EQ(c->chunk_bytes(), kDefaultStagingChunkBytes);
  EXPECT_EQ(dev.allocs, 0);  // staging memory only on first use
}

TEST(HostStagingCommunicator, AllReduceSumChunkedOutOfPlaceAndInPlace) {
  FakeDevice dev;
  auto c = staged(&dev, 64);  // 16 floats per chunk
  const int p = c->size(), r = c->rank();
  const size_t n = 1000;  // 62 full chunks + one of 8
  std::vector<float> send(n), recv(n, -1.0f);
  for (size_t i = 0; i < n; ++i) send[i] = static_cast<float>((r + 1) * static_cast<int>(i % 97));
  ASSERT_TRUE(c->all_reduce(send.data(), recv.data(), n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  const int rank_sum = p * (p + 1) / 2;
  int wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += recv[i] != static_cast<float>(rank_sum * static_cast<int>(i % 97));
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(dev.to_host_calls, 63);
  EXPECT_EQ(dev.to_device_calls, 63);
  EXPECT_EQ(dev.allocs, 1);
  EXPECT_EQ(dev.max_alloc, 64u);
  EXPECT_EQ(c->staging_bytes(), 64u);

  ASSERT_TRUE(c->all_reduce(send.data(), send.data(), n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_EQ(send, recv);
  EXPECT_EQ(dev.allocs, 1);
}

TEST(HostStagingCommunicator, AllReduceEveryOpAndType) {
  FakeDevice dev;
  auto c = staged(&dev, 24);  // 3 int64/doubles, 6 int32/floats, 24 uint8 per chunk
  const int p = c->size(), r = c->rank();

  std::vector<int32_t> v(20), mx(20), mn(20);
  for (int i = 0; i < 20; ++i) v[i] = (i % 2 == 0 ? r : -r) * (i + 1);
  ASSERT_TRUE(c->all_reduce(v.data(), mx.data(), 20, DataType::kInt32, ReduceOp::kMax).is_ok());
  ASSERT_TRUE(c->all_reduce(v.data(), mn.data(), 20, DataType::kInt32, ReduceOp::kMin).is_ok());
  int wrong = 0;
  for (int i = 0; i < 20; ++i) {
    wrong += mx[i] != (i % 2 == 0 ? (p - 1) * (i + 1) : 0);
    wrong += mn[i] != (i % 2 == 0 ? 0 : -(p - 1) * (i + 1));
  }
  EXPECT_EQ(wrong, 0);

  std::vector<int64_t> big(7, (int64_t{1} << 40) + r);
  ASSERT_TRUE(c->all_reduce(big.data(), big.data(), 7, DataType::kInt64, ReduceOp::kSum).is_ok());
  for (int64_t x : big) EXPECT_EQ(x, p * (int64_t{1} << 40) + p * (p - 1) / 2);

  std::vector<uint8_t> bytes(50);
  for (int i = 0; i < 50; ++i) bytes[i] = static_cast<uint8_t>((i + r * 7) % 251);
  std::vector<uint8_t> bytes_max(50);
  ASSERT_TRUE(c->all_reduce(bytes.data(), bytes_max.data(), 50, DataType::kUInt8, ReduceOp::kMax).is_ok());
  for (int i = 0; i < 50; ++i) {
    uint8_t expect = 0;
    for (int q = 0; q < p; ++q) expect = std::max(expect, static_cast<uint8_t>((i + q * 7) % 251));
    EXPECT_EQ(bytes_max[i], expect) << i;
  }

  std::vector<double> d(11);
  for (int i = 0; i < 11; ++i) d[i] = static_cast<double>(r * 2 + i);
  ASSERT_TRUE(c->all_reduce(d.data(), d.data(), 11, DataType::kFloat64, ReduceOp::kAvg).is_ok());
  for (int i = 0; i < 11; ++i) EXPECT_DOUBLE_EQ(d[i], static_cast<double>(p - 1 + i));
  std::vector<float> f(13, static_cast<float>(r * 4));
  ASSERT_TRUE(c->all_reduce(f.data(), f.data(), 13, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  for (float x : f) EXPECT_FLOAT_EQ(x, static_cast<float>(2 * (p - 1)));

  // bf16 (12 per chunk): exact small-integer sums through the host's user-defined MPI op.
  std::vector<uint16_t> h = testing::rank_bf16(r, 29, testing::small_value);
  ASSERT_TRUE(c->all_reduce(h.data(), h.data(), 29, DataType::kBFloat16, ReduceOp::kSum).is_ok());
  for (size_t k = 0; k < 29; ++k) EXPECT_EQ(bf16_to_float(h[k]), testing::small_sum(p, k)) << k;

  const int copies = dev.to_host_calls;
  int32_t i = 1;
  Status s = c->all_reduce(&i, &i, 1, DataType::kInt32, ReduceOp::kAvg);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kAvg"), std::string::npos);
  EXPECT_EQ(dev.to_host_calls, copies);  // rejected before any copy
}

TEST(HostStagingCommunicator, BroadcastFromEveryRootCopiesOneWayPerRank) {
  FakeDevice dev;
  auto c = staged(&dev, 24);  // 3 int64 per chunk: 37 elements = 13 chunks
  for (int root = 0; root < c->size(); ++root) {
    dev.to_host_calls = dev.to_device_calls = 0;
    std::vector<int64_t> v(37);
    for (int i = 0; i < 37; ++i) v[i] = c->rank() == root ? 1000 * root + i : -1;
    ASSERT_TRUE(c->broadcast(v.data(), v.size(), DataType::kInt64, root).is_ok());
    int wrong = 0;
    for (int i = 0; i < 37; ++i) wrong += v[i] != 1000 * root + i;
    EXPECT_EQ(wrong, 0) << "root " << root;
    const bool is_root = c->rank() == root;
    EXPECT_EQ(dev.to_host_calls, is_root ? 13 : 0);
    EXPECT_EQ(dev.to_device_calls, is_root ? 0 : 13);
  }
  uint8_t b = 0;
  EXPECT_EQ(c->broadcast(&b, 1, DataType::kUInt8, c->size()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->broadcast(&b, 1, DataType::kUInt8, -1).code(), StatusCode::kInvalidArgument);
}

void expect_gathered(const std::vector<float>& all, int p, size_t count) {
  int wrong = 0;
  for (int q = 0; q < p; ++q) {
    for (size_t i = 0; i < count; ++i)
      wrong += all[q * count + i] != static_cast<float>(q * 100 + static_cast<int>(i));
  }
  EXPECT_EQ(wrong, 0);
}

TEST(HostStagingCommunicator, AllGatherChunkedOutOfPlaceAndInPlace) {
  const int p = world()->size();
  const size_t count = 10;
  const size_t chunk_bytes = static_cast<size_t>(p + 1) * sizeof(float) * 3;  // 3 elements per rank and chunk
  FakeDevice dev;
  auto c = staged(&dev, chunk_bytes);
  const int r = c->rank();
  std::vector<float> mine(count);
  for (size_t i = 0; i < count; ++i) mine[i] = static_cast<float>(r * 100 + static_cast<int>(i));

  std::vector<float> all(count * p, -1.0f);
  ASSERT_TRUE(c->all_gather(mine.data(), all.data(), count, DataType::kFloat32).is_ok());
  expect_gathered(all, p, count);
  EXPECT_LE(dev.max_alloc, chunk_bytes);
  EXPECT_EQ(dev.to_host_calls, 4);        // chunks of 3, 3, 3, 1
  EXPECT_EQ(dev.to_device_calls, 4 * p);  // one block per rank and chunk

  std::vector<float> in_place(count * p, -1.0f);
  std::copy(mine.begin(), mine.end(), in_place.begin() + r * count);
  ASSERT_TRUE(c->all_gather(in_place.data() + r * count, in_place.data(), count, DataType::kFloat32).is_ok());
  expect_gathered(in_place, p, count);

  // Unchunked (default chunk): one copy each way.
  FakeDevice whole;
  auto u = staged(&whole, kDefaultStagingChunkBytes);
  std::vector<float> all2(count * p, -1.0f);
  ASSERT_TRUE(u->all_gather(mine.data(), all2.data(), count, DataType::kFloat32).is_ok());
  expect_gathered(all2, p, count);
  EXPECT_EQ(whole.to_host_calls, 1);
  EXPECT_EQ(whole.to_device_calls, 1);
  EXPECT_EQ(whole.max_alloc, (p + 1) * count * sizeof(float));
}

TEST(HostStagingCommunicator, StagingGrowsOnDemandAndStaysBounded) {
  FakeDevice dev;
  {
    auto c = staged(&dev, 256);
    std::vector<float> small(8, 1.0f), large(1000, 1.0f);
    ASSERT_TRUE(c->all_reduce(small.data(), small.data(), 8, DataType::kFloat32, ReduceOp::kSum).is_ok());
    EXPECT_EQ(c->staging_bytes(), 32u);
    ASSERT_TRUE(c->all_reduce(large.data(), large.data(), 1000, DataType::kFloat32, ReduceOp::kSum).is_ok());
    EXPECT_EQ(c->staging_bytes(), 256u);
    ASSERT_TRUE(c->all_reduce(large.data(), large.data(), 1000, DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(c->all_reduce(small.data(), small.data(), 8, DataType::kFloat32, ReduceOp::kSum).is_ok());
    EXPECT_EQ(dev.allocs, 2);
    EXPECT_EQ(dev.frees, 1);
    EXPECT_EQ(dev.max_alloc, 256u);
    const float p = static_cast<float>(c->size());
    EXPECT_EQ(large[999], p * p);
    EXPECT_EQ(small[0], p * p);
  }
  EXPECT_EQ(dev.frees, 2);  // the destructor frees the last buffer
}

TEST(HostStagingCommunicator, CopyFailureReturnsTracedStatus) {
  FakeDevice dev;
  dev.fail_to_host_at = 2;  // the third chunk, on every rank alike: no rank enters that collective
  auto c = staged(&dev, 16);
  std::vector<float> v(20, 1.0f);
  Status s = c->all_reduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(s.code(), StatusCode::kCudaError);
  EXPECT_NE(s.to_string().find("injected copy failure"), std::string::npos);
  EXPECT_NE(s.to_string().find("staging_communicator.cpp"), std::string::npos);
  EXPECT_EQ(dev.to_device_calls, 2);
  // The communicator stays usable.
  dev.fail_to_host_at = -1;
  ASSERT_TRUE(c->all_reduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kSum).is_ok());
}

TEST(HostStagingCommunicator, EmptyBuffersAndBarrier) {
  FakeDevice dev;
  auto c = staged(&dev, 64);
  EXPECT_TRUE(c->all_reduce(nullptr, nullptr, 0, DataType::kFloat32, ReduceOp::kSum).is_ok());
  EXPECT_TRUE(c->broadcast(nullptr, 0, DataType::kInt32, 0).is_ok());
  EXPECT_TRUE(c->all_gather(nullptr, nullptr, 0, DataType::kUInt8).is_ok());
  EXPECT_TRUE(c->barrier().is_ok());
  EXPECT_EQ(dev.allocs + dev.to_host_calls + dev.to_device_calls, 0);
}

// ---- on a GPU: the CUDA callbacks

// Every rank probes; the answer is the same on all ranks (MIN over ranks).
bool every_rank_has_gpu(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    *why = std::string("no usable CUDA device: ") + cudaGetErrorName(err);
    count = 0;
  } else if (count == 0) {
    *why = "no CUDA device";
  }
  int have = count > 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (have && !all) *why = "another rank has no CUDA device";
  if (all) {
    MPI_Comm node;
    int local_rank = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    if (cudaSetDevice(local_rank % count) != cudaSuccess) (void)cudaGetLastError();
  }
  return all != 0;
}

using test::DeviceVector;
using test::LateWrite;

TEST(CudaStaging, DeviceBuffersThroughMpi) {
  std::string why;
  if (!every_rank_has_gpu(&why)) GTEST_SKIP() << why;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::unique_ptr<HostStagingCommunicator> c;
  ASSERT_TRUE(make_cuda_staging_communicator(world(), stream, &c, 4096).is_ok());
  const int p = c->size(), r = c->rank();

  const size_t n = 10000;  // 10 chunks of 1024 floats
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>((r + 1) * static_cast<int>(i % 1013));
  DeviceVector<float> d(h), out(std::vector<float>(n, -1.0f));
  ASSERT_TRUE(c->all_reduce(d.ptr, out.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(c->all_reduce(d.ptr, d.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  const std::vector<float> a = out.download(), b = d.download();
  int wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const float expect = static_cast<float>(p * (p + 1) / 2 * static_cast<int>(i % 1013));
    wrong += (a[i] != expect) + (b[i] != expect);
  }
  EXPECT_EQ(wrong, 0);

  for (int root = 0; root < p; ++root) {
    DeviceVector<int64_t> v(std::vector<int64_t>(777, r == root ? 5000 + root : -1));
    ASSERT_TRUE(c->broadcast(v.ptr, v.n, DataType::kInt64, root).is_ok());
    const std::vector<int64_t> got = v.download();
    EXPECT_EQ(std::count(got.begin(), got.end(), 5000 + root), 777);
  }

  const size_t count = 3000;
  std::vector<float> all_h(count * p, -1.0f);
  for (size_t i = 0; i < count; ++i)
    all_h[r * count + i] = static_cast<float>(r * 100 + static_cast<int>(i % 50));
  DeviceVector<float> all(all_h);
  ASSERT_TRUE(c->all_gather(all.ptr + r * count, all.ptr, count, DataType::kFloat32).is_ok());
  const std::vector<float> g = all.download();
  wrong = 0;
  for (int q = 0; q < p; ++q) {
    for (size_t i = 0; i < count; ++i)
      wrong += g[q * count + i] != static_cast<float>(q * 100 + static_cast<int>(i % 50));
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_LE(c->staging_bytes(), 4096u);

  // Overlapped (the gradient buckets' path): MPI overlaps, so each chunk goes to a pinned block of
  // its own and the device buffers get the sums in wait_all().
  ASSERT_TRUE(c->overlaps());
  DeviceVector<float> x(h), y(h);
  ASSERT_TRUE(c->start_all_reduce(x.ptr, x.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
  ASSERT_TRUE(c->start_all_reduce(y.ptr, y.ptr, 2500, DataType::kFloat32, ReduceOp::kAvg).is_ok());
  EXPECT_EQ(c->pending(), 10u + 3u);
  ASSERT_TRUE(c->wait_all().is_ok());
  const std::vector<float> xs = x.download(), ys = y.download();
  wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const float sum = static_cast<float>(p * (p + 1) / 2 * static_cast<int>(i % 1013));
    wrong += xs[i] != sum;
    wrong += ys[i] != (i < 2500 ? (p > 1 ? sum * (1.0f / static_cast<float>(p)) : sum) : h[i]);
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(c->overlap_pinned_bytes(), (n + 2500) * sizeof(float));  // one block per chunk, each its size
  c.reset();
  cudaStreamDestroy(stream);
}

// Staging on the stream that produced the buffers: the copies come after its queued work, so a
// write that lands there only after a 300 ms pause is what the collective reduces (no host wait).
TEST(CudaStaging, CopiesOnTheProducerStreamFollowItsQueuedWork) {
  std::string why;
  if (!every_rank_has_gpu(&why)) GTEST_SKIP() << why;
  {
    std::unique_ptr<HostStagingCommunicator> legacy;
    ASSERT_TRUE(make_cuda_staging_communicator(world(), nullptr, &legacy).is_ok());
    EXPECT_FALSE(legacy->follows_producer_stream());  // the legacy stream skips non-blocking streams
  }
  cudaStream_t producer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&producer, cudaStreamNonBlocking), cudaSuccess);
  std::unique_ptr<HostStagingCommunicator> c;
  ASSERT_TRUE(make_cuda_staging_communicator(world(), producer, &c, 1 << 16).is_ok());
  EXPECT_TRUE(c->follows_producer_stream());
  const int p = c->size(), r = c->rank();
  const size_t n = 100000;  // several chunks
  const std::vector<float> late(n, static_cast<float>(r + 1));
  const float sum = static_cast<float>(p * (p + 1) / 2);
  long wrong = 0;
  {
    DeviceVector<float> v(std::vector<float>(n, -1000.0f));
    LateWrite<float> w(producer, v.ptr, late, 300);
    ASSERT_TRUE(c->all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    const std::vector<float> h = v.download();
    wrong += std::count_if(h.begin(), h.end(), [&](float x) { return x != sum; });
  }
  {
    DeviceVector<float> v(std::vector<float>(n, -1000.0f));
    LateWrite<float> w(producer, v.ptr, late, 300);
    ASSERT_TRUE(c->start_all_reduce(v.ptr, v.ptr, n, DataType::kFloat32, ReduceOp::kSum).is_ok());
    ASSERT_TRUE(c->wait_all().is_ok());
    const std::vector<float> h = v.download();
    wrong += std::count_if(h.begin(), h.end(), [&](float x) { return x != sum; });
  }
  EXPECT_EQ(wrong, 0);
  c.reset();
  cudaStreamDestroy(producer);
}

}  // namespace
}  // namespace perigee::collectives
