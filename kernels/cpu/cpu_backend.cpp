// CpuBackend construction and memory ops: 64-byte-aligned zero-filled host allocations, memset and
// memcpy (split into fixed chunks across threads for large buffers; plain bytes, no precision).
#include "kernels/cpu/cpu_backend.hpp"

#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/host_memory.hpp"

namespace perigee::kernels::cpu {
namespace {

constexpr size_t kCopyChunk = size_t{1} << 20;  // bytes per parallel memset/memcpy chunk

void parallel_zero(void* ptr, size_t bytes, int threads) {
  auto* p = static_cast<unsigned char*>(ptr);
  const int64_t chunks = static_cast<int64_t>((bytes + kCopyChunk - 1) / kCopyChunk);
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
  for (int64_t i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kCopyChunk;
    std::memset(p + begin, 0, std::min(kCopyChunk, bytes - begin));
  }
}

void parallel_copy(void* dst, const void* src, size_t bytes, int threads) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  const int64_t chunks = static_cast<int64_t>((bytes + kCopyChunk - 1) / kCopyChunk);
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
  for (int64_t i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kCopyChunk;
    std::memcpy(d + begin, s + begin, std::min(kCopyChunk, bytes - begin));
  }
}

Status copy_bytes(const char* op, void* dst, const void* src, size_t bytes, int threads) {
  if (bytes == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers(op, {dst, src}));
  const auto d = reinterpret_cast<std::uintptr_t>(dst);
  const auto s = reinterpret_cast<std::uintptr_t>(src);
  PERIGEE_REQUIRE(d == s || d + bytes <= s || s + bytes <= d, StatusCode::kInvalidArgument, op,
                  ": source and destination overlap");
  if (d != s) parallel_copy(dst, src, bytes, threads);
  return Status::ok();
}

}  // namespace

CpuBackend::CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {
  omp_set_num_threads(threads_);
  serial_blas();
}

Status CpuBackend::allocate(void** ptr, size_t bytes) {
  PERIGEE_REQUIRE(ptr != nullptr, StatusCode::kInvalidArgument, "allocate: null output pointer");
  *ptr = nullptr;
  PERIGEE_REQUIRE(bytes <= SIZE_MAX - kAlignment, StatusCode::kOutOfMemory, "allocate: ", bytes,
                  " bytes is too large");
  // aligned_alloc needs a multiple of the alignment; a zero-byte request still gets a unique block.
  const size_t rounded = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  PERIGEE_REQUIRE(p != nullptr, StatusCode::kOutOfMemory, "allocate: cannot allocate ", bytes,
                  " bytes of host memory");
  parallel_zero(p, rounded, threads_);
  *ptr = p;
  return Status::ok();
}

void CpuBackend::release(void* ptr) {
  std::free(ptr);
}

Status CpuBackend::memset_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("memset_zero", {ptr}));
  parallel_zero(ptr, bytes, threads_);
  return Status::ok();
}

Status CpuBackend::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  PERIGEE_CHECK(copy_bytes("copy_to_device", dst, host_src, bytes, threads_));
  return Status::ok();
}

Status CpuBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  PERIGEE_CHECK(copy_bytes("copy_to_host", host_dst, src, bytes, threads_));
  return Status::ok();
}

Status CpuBackend::synchronize() {
  return Status::ok();
}

Status CpuBackend::memory_info(MemoryInfo* out) const {
  HostMemory host;
  PERIGEE_CHECK(probe_host_memory(&host));
  *out = MemoryInfo{host.available, host.total, str_cat("host RAM (", host.source, ")")};
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
