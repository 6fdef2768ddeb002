// CudaChecksumKernels: ABFT checksum passes on CUDA device memory (see abft_checksums.cuh for the
// layout, the reduction orders and the precision).
#include "fault/cuda/abft_checksums.cuh"

#include <algorithm>
#include <cmath>

#include "fault/cuda/abft_checksums_factory.hpp"
#include "kernels/cuda/cuda_check.cuh"

namespace perigee::fault::cuda {

using kernels::cuda::block_sum;
using kernels::cuda::ceil_div;
using kernels::cuda::kFullMask;
using kernels::cuda::kWarpSize;

namespace {

constexpr int64_t kMaxRowBlocks = 65536;    // grid cap of the row pass (grid-stride over rows)
constexpr int64_t kMaxChunkBlocks = 65535;  // gridDim.y cap of the column pass (grid-stride over chunks)

// ---- CUDA kernels

// row[r] = sum_c X[r, c] v[c], row_abs[r] = sum_c |X[r, c]| vabs[c] (null v / vabs: ones). Thread t
// adds columns t, t + kRowBlock, ... in order, then block_sum's fixed tree.
template <bool kAbs>
__global__ void row_pass_kernel(const float* __restrict__ X, int64_t R, int64_t Cc,
                                const double* __restrict__ v, const double* __restrict__ vabs,
                                double* __restrict__ out, double* __restrict__ out_abs) {
  __shared__ double shared[kRowBlock / kWarpSize];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const float* x = X + r * Cc;
    double s = 0.0, a = 0.0;
    for (int64_t c = threadIdx.x; c < Cc; c += kRowBlock) {
      const double xv = x[c];
      s += v != nullptr ? xv * v[c] : xv;
      if constexpr (kAbs) a += vabs != nullptr ? fabs(xv) * vabs[c] : fabs(xv);
    }
    s = block_sum<kRowBlock>(s, shared);
    if constexpr (kAbs) a = block_sum<kRowBlock>(a, shared);
    if (threadIdx.x == 0) {
      out[r] = s;
      if constexpr (kAbs) out_abs[r] = a;
    }
  }
}

// Column partials of one chunk of kColChunkRows rows: part[chunk * Cc + c] = sum over the chunk's rows
// of u[r] X[r, c] (and the |.| twin). Block: kColTile columns (x) x kColLanes row lanes (y); lane y
// adds rows y, y + kColLanes, ... in order; the lanes are then added in lane order.
template <bool kAbs>
__global__ void col_pass_kernel(const float* __restrict__ X, int64_t R, int64_t Cc,
                                const double* __restrict__ u, const double* __restrict__ uabs,
                                double* __restrict__ part, double* __restrict__ part_abs) {
  __shared__ double sums[kColLanes][kColTile];
  __shared__ double abss[kColLanes][kColTile];
  const int64_t chunks = (R + kColChunkRows - 1) / kColChunkRows;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  for (int64_t chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    const int64_t r1 = (chunk + 1) * kColChunkRows < R ? (chunk + 1) * kColChunkRows : R;
    double s = 0.0, a = 0.0;
    if (c < Cc) {
      for (int64_t r = chunk * kColChunkRows + threadIdx.y; r < r1; r += kColLanes) {
        const double xv = X[r * Cc + c];
        s += u != nullptr ? u[r] * xv : xv;
        if constexpr (kAbs) a += uabs != nullptr ? uabs[r] * fabs(xv) : fabs(xv);
      }
    }
    __syncthreads();  // the previous chunk's lane sums are read
    sums[threadIdx.y][threadIdx.x] = s;
    if constexpr (kAbs) abss[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0 && c < Cc) {
      double t = sums[0][threadIdx.x], ta = kAbs ? abss[0][threadIdx.x] : 0.0;
#pragma unroll
      for (int l = 1; l < kColLanes; ++l) {
        t += sums[l][threadIdx.x];
        if constexpr (kAbs) ta += abss[l][threadIdx.x];
      }
      part[chunk * Cc + c] = t;
      if constexpr (kAbs) part_abs[chunk * Cc + c] = ta;
    }
  }
}

// out[c] = sum over chunks, in chunk order, of part[chunk * Cc + c] (and the |.| twin when out_abs).
__global__ void col_finish_kernel(const double* __restrict__ part, const double* __restrict__ part_abs,
                                  int64_t chunks, int64_t Cc, double* __restrict__ out,
                                  double* __restrict__ out_abs) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < Cc;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0, a = 0.0;
    for (int64_t i = 0; i < chunks; ++i) {
      s += part[i * Cc + c];
      if (out_abs != nullptr) a += part_abs[i * Cc + c];
    }
    out[c] = s;
    if (out_abs != nullptr) out_abs[c] = a;
  }
}

__global__ void fill_weights_kernel(double* out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = static_cast<double>(i + 1);
  }
}

// One output element in double: out[0] = sum_k x[k * sx] y[k * sy] (+ extra0) (+ extra1), out[1] =
// the same over |terms|. y null: every y is 1. Products of two floats are exact in double.
__global__ void element_reference_kernel(const float* __restrict__ x, int64_t sx, const float* __restrict__ y,
                                         int64_t sy, int64_t K, const float* extra0, const float* extra1,
                                         double* out) {
  __shared__ double shared[kElementBlock / kWarpSize];
  double s = 0.0, a = 0.0;
  for (int64_t k = threadIdx.x; k < K; k += kElementBlock) {
    const double t = static_cast<double>(x[k * sx]) * (y != nullptr ? static_cast<double>(y[k * sy]) : 1.0);
    s += t;
    a += fabs(t);
  }
  s = block_sum<kElementBlock>(s, shared);
  a = block_sum<kElementBlock>(a, shared);
  if (threadIdx.x == 0) {
    if (extra0 != nullptr) {  // bias, then the prior content: the host's order
      s += static_cast<double>(*extra0);
      a += fabs(static_cast<double>(*extra0));
    }
    if (extra1 != nullptr) {
      s += static_cast<double>(*extra1);
      a += fabs(static_cast<double>(*extra1));
    }
    out[0] = s;
    out[1] = a;
  }
}

__global__ void or_bits_kernel(const float* __restrict__ x, size_t n, unsigned* flag) {
  const unsigned* bits = reinterpret_cast<const unsigned*>(x);
  unsigned any = 0;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    any |= bits[i];
  }
  any = __reduce_or_sync(kFullMask, any);
  if (threadIdx.x % kWarpSize == 0 && any != 0) atomicOr(flag, any);
}

}  // namespace

// ---- kernel launchers

size_t pass_scratch_doubles(int64_t R, int64_t Cc) {
  return static_cast<size_t>(2 * ceil_div<int64_t>(R, kColChunkRows) * Cc);
}

namespace {

// Line vectors plus the largest pass's partials of encode, encode_weighted and measure.
size_t encode_partials(const GemmProblem& p) {
  return std::max({pass_scratch_doubles(p.N, p.C), pass_scratch_doubles(p.OC, p.C),
                   pass_scratch_doubles(p.N, p.OC), pass_scratch_doubles(p.rows(), p.cols())});
}
size_t encode_doubles(const GemmProblem& p) {
  return static_cast<size_t>(4 * p.inner() + 2 * p.rows() + 2 * p.cols()) + encode_partials(p);
}
size_t encode_weighted_doubles(const GemmProblem& p) {
  return static_cast<size_t>(2 * p.inner() + 2 * p.rows() + 2 * p.cols()) + encode_partials(p);
}
size_t measure_doubles(const GemmProblem& p) {
  return static_cast<size_t>(2 * p.rows() + 2 * p.cols()) + pass_scratch_doubles(p.rows(), p.cols());
}
constexpr int64_t kSmallDoubles = 4;  // reference value and abs, then the all_zero flag

}  // namespace

size_t workspace_doubles(const GemmProblem& p) {
  return std::max({encode_doubles(p), encode_weighted_doubles(p), measure_doubles(p)});
}

int64_t weights_needed(const GemmProblem& p) {
  return std::max(
      {static_cast<int64_t>(p.N), static_cast<int64_t>(p.C), static_cast<int64_t>(p.OC), p.rows(), p.cols()});
}

Status launch_pass(const float* X, int64_t R, int64_t Cc, const DevicePass& pass, double* partials,
                   cudaStream_t stream) {
  PERIGEE_REQUIRE(X != nullptr && R > 0 && Cc > 0, StatusCode::kInvalidArgument, "abft pass: empty matrix");
  if (pass.row_out != nullptr) {
    const auto grid = static_cast<unsigned>(std::min(R, kMaxRowBlocks));
    if (pass.row_abs != nullptr) {
      row_pass_kernel<true>
          <<<grid, kRowBlock, 0, stream>>>(X, R, Cc, pass.row_v, pass.row_vabs, pass.row_out, pass.row_abs);
    } else {
      row_pass_kernel<false>
          <<<grid, kRowBlock, 0, stream>>>(X, R, Cc, pass.row_v, nullptr, pass.row_out, nullptr);
    }
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  if (pass.col_out != nullptr) {
    const int64_t chunks = ceil_div<int64_t>(R, kColChunkRows);
    double* part = partials;
    double* part_abs = partials + chunks * Cc;
    const dim3 grid(static_cast<unsigned>(ceil_div<int64_t>(Cc, kColTile)),
                    static_cast<unsigned>(std::min(chunks, kMaxChunkBlocks)));
    const dim3 block(kColTile, kColLanes);
    if (pass.col_abs != nullptr) {
      col_pass_kernel<true><<<grid, block, 0, stream>>>(X, R, Cc, pass.col_u, pass.col_uabs, part, part_abs);
    } else {
      col_pass_kernel<false><<<grid, block, 0, stream>>>(X, R, Cc, pass.col_u, nullptr, part, nullptr);
    }
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    col_finish_kernel<<<kernels::cuda::flat_grid(static_cast<size_t>(Cc), 256), 256, 0, stream>>>(
        part, pass.col_abs != nullptr ? part_abs : nullptr, chunks, Cc, pass.col_out, pass.col_abs);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  return Status::ok();
}

Status launch_fill_weights(double* out, int64_t n, cudaStream_t stream) {
  fill_weights_kernel<<<kernels::cuda::flat_grid(static_cast<size_t>(n), 256), 256, 0, stream>>>(out, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

Status launch_element_reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                                double* out, cudaStream_t stream) {
  const int64_t C = p.C, OC = p.OC, K = p.inner();
  const float *x = nullptr, *y = nullptr, *extra0 = nullptr, *extra1 = nullptr;
  int64_t sx = 1, sy = 1;
  switch (p.kind) {
    case GemmKind::kForward:  // inp[row, k] weight[col, k] (+ bias[col])
      x = p.inp + row * C;
      y = p.weight + col * C;
      if (p.bias != nullptr) extra0 = p.bias + col;
      break;
    case GemmKind::kBackwardInput:  // dout[row, k] weight[k, col]
      x = p.dout + row * OC;
      y = p.weight + col;
      sy = C;
      break;
    case GemmKind::kBackwardWeight:  // dout[k, row] inp[k, col]
      x = p.dout + row;
      sx = OC;
      y = p.inp + col;
      sy = C;
      break;
    case GemmKind::kBackwardBias:  // dout[k, col]
      x = p.dout + col;
      sx = OC;
      break;
  }
  if (before != nullptr && p.accumulates()) extra1 = before + row * p.cols() + col;
  element_reference_kernel<<<1, kElementBlock, 0, stream>>>(x, sx, y, sy, K, extra0, extra1, out);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

Status launch_or_bits(const float* x, size_t n, unsigned* flag, cudaStream_t stream) {
  or_bits_kernel<<<kernels::cuda::flat_grid(n, 256), 256, 0, stream>>>(x, n, flag);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

// ---- CudaChecksumKernels

CudaChecksumKernels::CudaChecksumKernels(kernels::cuda::CudaBackend* backend)
    : backend_(backend), stream_(backend->stream()) {}

CudaChecksumKernels::~CudaChecksumKernels() {
  cudaStreamSynchronize(stream_);
  if (work_ != nullptr) cudaFree(work_);
  if (weights_ != nullptr) cudaFree(weights_);
  if (small_ != nullptr) cudaFree(small_);
}

namespace {

// The most workspace and weights any of `problems` takes.
Status largest_need(std::span<const GemmProblem> problems, size_t* work, int64_t* n) {
  *work = 0;
  *n = 0;
  for (const GemmProblem& p : problems) {
    PERIGEE_CHECK(p.validate_sizes());
    *work = std::max(*work, workspace_doubles(p));
    *n = std::max(*n, weights_needed(p));
  }
  return Status::ok();
}

}  // namespace

Status CudaChecksumKernels::working_bytes(std::span<const GemmProblem> problems, uint64_t* bytes) const {
  size_t work = 0;
  int64_t n = 0;
  PERIGEE_CHECK(largest_need(problems, &work, &n));
  *bytes = problems.empty() ? 0 : (work + static_cast<uint64_t>(n) + kSmallDoubles) * sizeof(double);
  return Status::ok();
}

Status CudaChecksumKernels::reserve_working(std::span<const GemmProblem> problems) {
  size_t work = 0;
  int64_t n = 0;
  PERIGEE_CHECK(largest_need(problems, &work, &n));
  if (problems.empty()) return Status::ok();
  PERIGEE_CHECK(reserve(work, /*exact=*/true));
  const double* w = nullptr;
  PERIGEE_CHECK(weights(n, &w));
  double* one = nullptr;
  return small(&one);
}

uint64_t CudaChecksumKernels::held_bytes() const {
  return (work_doubles_ + static_cast<uint64_t>(weights_n_) + (small_ != nullptr ? kSmallDoubles : 0)) *
         sizeof(double);
}

Status CudaChecksumKernels::reserve(size_t doubles, bool exact) {
  if (doubles <= work_doubles_) return Status::ok();
  const size_t grown = exact ? doubles : std::max(doubles, 2 * work_doubles_);
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  if (work_ != nullptr) PERIGEE_CHECK_CUDA(cudaFree(work_));
  work_ = nullptr;
  work_doubles_ = 0;
  const cudaError_t err = cudaMalloc(&work_, grown * sizeof(double));
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    work_ = nullptr;
    return make_error(StatusCode::kOutOfMemory, "abft checksums: cannot allocate ", grown * sizeof(double),
                      " bytes of device memory");
  }
  PERIGEE_CHECK_CUDA(err);
  work_doubles_ = grown;
  return Status::ok();
}

Status CudaChecksumKernels::weights(int64_t n, const double** out) {
  if (n > weights_n_) {
    PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
    if (weights_ != nullptr) PERIGEE_CHECK_CUDA(cudaFree(weights_));
    weights_ = nullptr;
    weights_n_ = 0;
    PERIGEE_CHECK_CUDA(cudaMalloc(&weights_, static_cast<size_t>(n) * sizeof(double)));
    PERIGEE_CHECK(launch_fill_weights(weights_, n, stream_));
    weights_n_ = n;
  }
  *out = weights_;
  return Status::ok();
}

Status CudaChecksumKernels::small(double** out) {
  if (small_ == nullptr) PERIGEE_CHECK_CUDA(cudaMalloc(&small_, kSmallDoubles * sizeof(double)));
  *out = small_;
  return Status::ok();
}

Status CudaChecksumKernels::pass(const float* X, int64_t R, int64_t Cc, const DevicePass& p) {
  // The partials sit after the vectors, at the end of the workspace (reserved by the caller).
  const size_t need = pass_scratch_doubles(R, Cc);
  PERIGEE_REQUIRE(need <= work_doubles_, StatusCode::kInternal, "abft checksums: workspace too small");
  return launch_pass(X, R, Cc, p, work_ + (work_doubles_ - need), stream_);
}

Status CudaChecksumKernels::fetch(const double* src, int64_t n, std::vector<double>* dst) {
  dst->resize(static_cast<size_t>(n));
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(dst->data(), src, static_cast<size_t>(n) * sizeof(double),
                                     cudaMemcpyDeviceToHost, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return Status::ok();
}

Status CudaChecksumKernels::add_before(const float* before, int64_t M, int64_t Nn, const double* row_w,
                                       const double* col_w, std::vector<double>* row,
                                       std::vector<double>* col, std::vector<double>* row_abs,
                                       std::vector<double>* col_abs) {
  const bool abs = row_abs != nullptr;
  double* r0 = work_;
  double* r1 = r0 + M;
  double* c0 = r1 + M;
  double* c1 = c0 + Nn;
  PERIGEE_CHECK(pass(before, M, Nn,
                     {.row_v = row_w,
                      .col_u = col_w,
                      .row_out = r0,
                      .row_abs = abs ? r1 : nullptr,
                      .col_out = c0,
                      .col_abs = abs ? c1 : nullptr}));
  PERIGEE_CHECK(fetch(r0, M, &tmp_[0]));
  PERIGEE_CHECK(fetch(c0, Nn, &tmp_[2]));
  if (abs) {
    PERIGEE_CHECK(fetch(r1, M, &tmp_[1]));
    PERIGEE_CHECK(fetch(c1, Nn, &tmp_[3]));
  }
  for (int64_t i = 0; i < M; ++i) {
    (*row)[i] += tmp_[0][i];
    if (abs) (*row_abs)[i] += tmp_[1][i];
  }
  for (int64_t j = 0; j < Nn; ++j) {
    (*col)[j] += tmp_[2][j];
    if (abs) (*col_abs)[j] += tmp_[3][j];
  }
  return Status::ok();
}

// The host's encode (fault/abft_gemm.cpp) with device passes: alpha = e^T A and beta = B e with their
// |.| twins on the device, then the expected sums and S; the bias and prior-content terms are added on
// the host in the host's order. One fixed pass order per kind.
Status CudaChecksumKernels::encode(const GemmProblem& p, const float* before, GemmEncoding* out) {
  PERIGEE_CHECK(p.validate());
  const int64_t N = p.N, C = p.C, OC = p.OC;
  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  PERIGEE_CHECK(reserve(encode_doubles(p)));
  double* a0 = work_;
  double* a1 = a0 + K;
  double* b0 = a1 + K;
  double* b1 = b0 + K;
  double* erow = b1 + K;
  double* srow = erow + M;
  double* ecol = srow + M;
  double* scol = ecol + Nn;
  switch (p.kind) {
    case GemmKind::kForward:  // A = inp [N, C], B = weight^T; alpha, beta over C
      PERIGEE_CHECK(pass(p.inp, N, C, {.col_out = a0, .col_abs = a1}));
      PERIGEE_CHECK(pass(
          p.weight, OC, C,
          {.row_v = a0, .row_vabs = a1, .row_out = ecol, .row_abs = scol, .col_out = b0, .col_abs = b1}));
      PERIGEE_CHECK(pass(p.inp, N, C, {.row_v = b0, .row_vabs = b1, .row_out = erow, .row_abs = srow}));
      break;
    case GemmKind::kBackwardInput:  // A = dout [N, OC], B = weight [OC, C]; alpha, beta over OC
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_out = a0, .col_abs = a1}));
      PERIGEE_CHECK(pass(
          p.weight, OC, C,
          {.col_u = a0, .col_uabs = a1, .row_out = b0, .row_abs = b1, .col_out = ecol, .col_abs = scol}));
      PERIGEE_CHECK(pass(p.dout, N, OC, {.row_v = b0, .row_vabs = b1, .row_out = erow, .row_abs = srow}));
      break;
    case GemmKind::kBackwardWeight:  // A = dout^T [OC, N], B = inp [N, C]; alpha, beta over N
      PERIGEE_CHECK(pass(p.dout, N, OC, {.row_out = a0, .row_abs = a1}));
      PERIGEE_CHECK(pass(
          p.inp, N, C,
          {.col_u = a0, .col_uabs = a1, .row_out = b0, .row_abs = b1, .col_out = ecol, .col_abs = scol}));
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_u = b0, .col_uabs = b1, .col_out = erow, .col_abs = srow}));
      break;
    case GemmKind::kBackwardBias:  // A = e^T [1, N], B = dout [N, OC]: one element per column
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_out = ecol, .col_abs = scol}));
      break;
  }
  PERIGEE_CHECK(fetch(ecol, Nn, &out->expected.col));
  PERIGEE_CHECK(fetch(scol, Nn, &out->col_abs));
  if (p.kind == GemmKind::kBackwardBias) {
    double sum = 0.0, sum_abs = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      sum += out->expected.col[j];
      sum_abs += out->col_abs[j];
    }
    out->expected.row.assign(1, sum);
    out->row_abs.assign(1, sum_abs);
  } else {
    PERIGEE_CHECK(fetch(erow, M, &out->expected.row));
    PERIGEE_CHECK(fetch(srow, M, &out->row_abs));
  }
  if (p.kind == GemmKind::kForward && p.bias != nullptr) {
    bias_.resize(static_cast<size_t>(OC));
    PERIGEE_CHECK_CUDA(
        cudaMemcpyAsync(bias_.data(), p.bias, bias_.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
    const double n = static_cast<double>(N);
    double sb = 0.0, sba = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      const double b = bias_[j];
      out->expected.col[j] += n * b;
      out->col_abs[j] += n * std::fabs(b);
      sb += b;
      sba += std::fabs(b);
    }
    for (int64_t i = 0; i < N; ++i) {
      out->expected.row[i] += sb;
      out->row_abs[i] += sba;
    }
  }
  if (before != nullptr && p.accumulates()) {
    PERIGEE_CHECK(add_before(before, M, Nn, nullptr, nullptr, &out->expected.row, &out->expected.col,
                             &out->row_abs, &out->col_abs));
  }
  return Status::ok();
}

// Index-weighted predictions (weights 1..n on the other side), as the host's encode_weighted.
Status CudaChecksumKernels::encode_weighted(const GemmProblem& p, const float* before, GemmEncoding* out) {
  PERIGEE_CHECK(p.validate());
  const int64_t N = p.N, C = p.C, OC = p.OC;
  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const double* w = nullptr;
  PERIGEE_CHECK(weights(std::max({N, C, OC}), &w));
  PERIGEE_CHECK(reserve(encode_weighted_doubles(p)));
  double* aw = work_;
  double* bw = aw + K;
  double* rw = bw + K;
  double* cw = rw + M;
  switch (p.kind) {
    case GemmKind::kForward:
      PERIGEE_CHECK(pass(p.inp, N, C, {.col_u = w, .col_out = aw}));
      PERIGEE_CHECK(pass(p.weight, OC, C, {.row_v = aw, .col_u = w, .row_out = cw, .col_out = bw}));
      PERIGEE_CHECK(pass(p.inp, N, C, {.row_v = bw, .row_out = rw}));
      break;
    case GemmKind::kBackwardInput:
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_u = w, .col_out = aw}));
      PERIGEE_CHECK(pass(p.weight, OC, C, {.row_v = w, .col_u = aw, .row_out = bw, .col_out = cw}));
      PERIGEE_CHECK(pass(p.dout, N, OC, {.row_v = bw, .row_out = rw}));
      break;
    case GemmKind::kBackwardWeight:
      PERIGEE_CHECK(pass(p.dout, N, OC, {.row_v = w, .row_out = aw}));
      PERIGEE_CHECK(pass(p.inp, N, C, {.row_v = w, .col_u = aw, .row_out = bw, .col_out = cw}));
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_u = bw, .col_out = rw}));
      break;
    case GemmKind::kBackwardBias:
      PERIGEE_CHECK(pass(p.dout, N, OC, {.col_out = cw}));  // one row, weight 1
      break;
  }
  PERIGEE_CHECK(fetch(cw, Nn, &out->expected.col_weighted));
  std::vector<double>& rows = out->expected.row_weighted;
  if (p.kind == GemmKind::kBackwardBias) {
    double sum = 0.0;
    for (int64_t j = 0; j < OC; ++j) sum += static_cast<double>(j + 1) * out->expected.col_weighted[j];
    rows.assign(1, sum);
  } else {
    PERIGEE_CHECK(fetch(rw, M, &rows));
  }
  if (p.kind == GemmKind::kForward && p.bias != nullptr) {
    bias_.resize(static_cast<size_t>(OC));
    PERIGEE_CHECK_CUDA(
        cudaMemcpyAsync(bias_.data(), p.bias, bias_.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
    const double n = static_cast<double>(N), nw = n * (n + 1.0) / 2.0;
    double sbw = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      out->expected.col_weighted[j] += nw * bias_[j];
      sbw += static_cast<double>(j + 1) * bias_[j];
    }
    for (int64_t i = 0; i < N; ++i) rows[i] += sbw;
  }
  if (before != nullptr && p.accumulates()) {
    PERIGEE_CHECK(add_before(before, M, Nn, w, w, &rows, &out->expected.col_weighted, nullptr, nullptr));
  }
  return Status::ok();
}

Status CudaChecksumKernels::measure(const GemmProblem& p, const float* c, bool weighted, LineSums* out) {
  PERIGEE_REQUIRE(c != nullptr, StatusCode::kInvalidArgument, "abft measure: null output");
  const int64_t M = p.rows(), Nn = p.cols();
  PERIGEE_CHECK(reserve(measure_doubles(p)));
  double* r = work_;
  double* cl = r + M;
  double* rw = cl + Nn;
  double* cw = rw + M;
  const double* w = nullptr;
  if (weighted) PERIGEE_CHECK(weights(std::max(M, Nn), &w));
  PERIGEE_CHECK(pass(c, M, Nn, {.row_out = r, .col_out = cl}));
  if (weighted) PERIGEE_CHECK(pass(c, M, Nn, {.row_v = w, .col_u = w, .row_out = rw, .col_out = cw}));
  PERIGEE_CHECK(fetch(r, M, &out->row));
  PERIGEE_CHECK(fetch(cl, Nn, &out->col));
  if (weighted) {
    PERIGEE_CHECK(fetch(rw, M, &out->row_weighted));
    PERIGEE_CHECK(fetch(cw, Nn, &out->col_weighted));
  }
  return Status::ok();
}

Status CudaChecksumKernels::reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                                      ElementReference* out) {
  PERIGEE_REQUIRE(row >= 0 && row < p.rows() && col >= 0 && col < p.cols(), StatusCode::kInvalidArgument,
                  "abft reference: element (", row, ", ", col, ") outside [", p.rows(), ", ", p.cols(), "]");
  double* dev = nullptr;
  PERIGEE_CHECK(small(&dev));
  PERIGEE_CHECK(launch_element_reference(p, before, row, col, dev, stream_));
  double host[2];
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(host, dev, sizeof host, cudaMemcpyDeviceToHost, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  out->value = host[0];
  out->abs = host[1];
  return Status::ok();
}

Status CudaChecksumKernels::read(const float* c, size_t index, float* value) {
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(value, c + index, sizeof(float), cudaMemcpyDeviceToHost, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return Status::ok();
}

Status CudaChecksumKernels::write(float* c, size_t index, float value) {
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(c + index, &value, sizeof(float), cudaMemcpyHostToDevice, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));  // `value` lives on this frame
  return Status::ok();
}

Status CudaChecksumKernels::copy(float* dst, const float* src, size_t n) {
  if (n == 0 || dst == src) return Status::ok();
  PERIGEE_REQUIRE(dst != nullptr && src != nullptr, StatusCode::kInvalidArgument, "abft copy: null pointer");
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  return Status::ok();
}

Status CudaChecksumKernels::all_zero(const float* x, size_t n, bool* zero) {
  PERIGEE_REQUIRE(x != nullptr || n == 0, StatusCode::kInvalidArgument, "abft all_zero: null pointer");
  *zero = true;
  if (n == 0) return Status::ok();
  double* dev = nullptr;
  PERIGEE_CHECK(small(&dev));
  auto* flag = reinterpret_cast<unsigned*>(dev + 2);
  PERIGEE_CHECK_CUDA(cudaMemsetAsync(flag, 0, sizeof(unsigned), stream_));
  PERIGEE_CHECK(launch_or_bits(x, n, flag, stream_));
  unsigned any = 0;
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(&any, flag, sizeof any, cudaMemcpyDeviceToHost, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  *zero = any == 0;
  return Status::ok();
}

Status make_cuda_checksum_kernels(kernels::Backend* cuda_backend, std::unique_ptr<ChecksumKernels>* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "make_cuda_checksum_kernels: null out");
  auto* backend = dynamic_cast<kernels::cuda::CudaBackend*>(cuda_backend);
  PERIGEE_REQUIRE(backend != nullptr, StatusCode::kInvalidArgument,
                  "make_cuda_checksum_kernels: the backend is not a CudaBackend");
  *out = std::make_unique<CudaChecksumKernels>(backend);
  return Status::ok();
}

}  // namespace perigee::fault::cuda
