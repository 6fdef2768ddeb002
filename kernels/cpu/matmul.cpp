// Linear layer, fp32 with OpenBLAS GEMMs. inp [N, C], weight [OC, C] (row-major, out = inp @ W^T),
// bias [OC], out [N, OC]. Backward: dinp = dout @ W (written, beta = 0), dweight += dout^T @ inp
// (accumulated, beta = 1), dbias += column sums of dout (double accumulators, rows in order, each thread
// owning a cache-line-aligned column range). Every GEMM is cut into output tiles (at most 256 x 512) run as
// OpenMP tasks, each one single-threaded cblas_sgemm over the whole reduction dimension. The tiling depends
// only on the shape, so results do not depend on the thread count, and OpenBLAS never runs its own thread
// pool next to OpenMP's (measured on a GPT-2 layer: the two pools spinning against each other cost more than
// OpenBLAS's own threading gains over tiles).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

constexpr int64_t kMaxTileM = 256;  // output rows per task
constexpr int64_t kMaxTileN = 512;  // output columns per task
constexpr int64_t kMinTileM = 64;
constexpr int64_t kMinTileN = 128;
constexpr int64_t kTargetTiles = 32;  // split smaller GEMMs down to about this many tasks

struct Tiling {
  int64_t tile_m, tile_n, tiles_m, tiles_n;
};

// Output tiles of an [M, N] product: as large as kMaxTile*, shrunk (columns first) until there are
// about kTargetTiles. A function of the shape only, never of the thread count.
Tiling choose_tiling(int64_t M, int64_t N) {
  Tiling t{kMaxTileM, kMaxTileN, 0, 0};
  auto count = [&] {
    t.tiles_m = (M + t.tile_m - 1) / t.tile_m;
    t.tiles_n = (N + t.tile_n - 1) / t.tile_n;
    return t.tiles_m * t.tiles_n;
  };
  while (count() < kTargetTiles && t.tile_n / 2 >= kMinTileN && N > t.tile_n / 2) t.tile_n /= 2;
  while (count() < kTargetTiles && t.tile_m / 2 >= kMinTileM && M > t.tile_m / 2) t.tile_m /= 2;
  count();
  return t;
}

// C[M, N] = op(A) op(B) + beta C, row-major, tile by tile; bias (length N, may be null) is added to
// each finished tile.
void tiled_sgemm(int threads, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int64_t M, int64_t N,
                 int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc, const float* bias) {
  serial_blas();
  const Tiling t = choose_tiling(M, N);
  const int64_t tiles = t.tiles_m * t.tiles_n;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (tiles > 1)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t i0 = tile / t.tiles_n * t.tile_m;
    const int64_t j0 = tile % t.tiles_n * t.tile_n;
    const int64_t m = std::min(t.tile_m, M - i0);
    const int64_t n = std::min(t.tile_n, N - j0);
    const float* a = trans_a == CblasNoTrans ? A + i0 * lda : A + i0;
    const float* b = trans_b == CblasNoTrans ? B + j0 : B + j0 * ldb;
    float* c = C + i0 * ldc + j0;
    cblas_sgemm(CblasRowMajor, trans_a, trans_b, m, n, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (bias != nullptr) {
      for (int64_t i = 0; i < m; ++i) {
        float* row = c + i * ldc;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) row[j] += bias[j0 + j];
      }
    }
  }
}

}  // namespace

Status CpuBackend::matmul_forward_f32(float* out, const float* inp, const float* weight, const float* bias,
                                      int N, int C, int OC) {
  PERIGEE_CHECK(check_pointers("matmul_forward", {out, inp, weight}));
  PERIGEE_CHECK(check_dims("matmul_forward", {N, C, OC}));
  tiled_sgemm(threads_, CblasNoTrans, CblasTrans, N, OC, C, inp, C, weight, C, 0.0f, out, OC, bias);
  return Status::ok();
}

Status CpuBackend::matmul_backward_f32(float* dinp, float* dweight, float* dbias, const float* dout,
                                       const float* inp, const float* weight, int N, int C, int OC) {
  PERIGEE_CHECK(check_pointers("matmul_backward", {dout}));
  PERIGEE_CHECK(check_dims("matmul_backward", {N, C, OC}));
  if (dinp != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dinp needs weight)", {weight}));
  }
  if (dweight != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dweight needs inp)", {inp}));
  }
  if (dbias != nullptr) {
#pragma omp parallel num_threads(threads_) if (int64_t{N} * OC >= kParallelMin)
    {
      const ColumnRange cols = column_range(OC, omp_get_thread_num(), omp_get_num_threads());
      const int64_t width = cols.end - cols.begin;
      if (width > 0) {
        std::vector<double> acc(width, 0.0);
        double* a = acc.data();
        for (int64_t n = 0; n < N; ++n) {
          const float* d = dout + n * OC + cols.begin;
#pragma omp simd
          for (int64_t j = 0; j < width; ++j) a[j] += d[j];
        }
        for (int64_t j = 0; j < width; ++j) dbias[cols.begin + j] += static_cast<float>(a[j]);
      }
    }
  }
  if (dinp != nullptr) {
    tiled_sgemm(threads_, CblasNoTrans, CblasNoTrans, N, C, OC, dout, OC, weight, C, 0.0f, dinp, C, nullptr);
  }
  if (dweight != nullptr) {
    tiled_sgemm(threads_, CblasTrans, CblasNoTrans, OC, C, N, dout, OC, inp, C, 1.0f, dweight, C, nullptr);
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
