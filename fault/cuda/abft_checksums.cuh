// CudaChecksumKernels: the memory-touching half of ABFT (fault/abft_gemm.hpp) on CUDA device memory.
// What: the same calls as HostChecksumKernels (operand reductions that predict an output's row and
// column sums, plain and index-weighted, with their magnitude sums S; the measured sums of an output;
// one element recomputed exactly; single-element reads and writes; copies; the all-zero test), on the
// device; only the line vectors and single values that AbftGemm needs come back to the host.
// Layout: every matrix is row-major fp32, X[R, Cc]. One "pass" over X computes, for given double
// vectors v (length Cc) and u (length R), any of
//   row[r] = sum_c X[r, c] v[c]     row_abs[r] = sum_c |X[r, c]| vabs[c]
//   col[c] = sum_r u[r] X[r, c]     col_abs[c] = sum_r uabs[r] |X[r, c]|
// (a null vector means all ones). Row sums: one block per row, thread t adds columns t, t + block, ...,
// then a fixed warp/block tree. Column sums: rows cut into chunks of kColChunkRows; a block of 32
// columns x 8 row lanes adds its chunk (lane y takes rows y, y + 8, ...), the lanes are combined in
// lane order, and a second kernel adds the chunk partials in chunk order.
// Precision: every product and sum in double (fp32 values are exact in double), no FMA contraction
// (the target compiles with --fmad=false), fixed orders only, so results are bit-reproducible on one
// device and agree with the host kernels within double rounding (the sum orders differ).
// Stream: every launch and copy goes on the CudaBackend's stream, after the GEMM that produced the data.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fault/abft_gemm.hpp"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::fault::cuda {

inline constexpr int kRowBlock = 256;           // threads per row of a row pass
inline constexpr int kColTile = 32;             // columns per block of a column pass
inline constexpr int kColLanes = 8;             // row lanes per block of a column pass
inline constexpr int64_t kColChunkRows = 1024;  // rows per column-pass chunk
inline constexpr int kElementBlock = 256;       // threads of the single-element recompute

// One pass over a device X[R, Cc] (see the header comment). Device pointers; null outputs are not
// computed; abs outputs need their twin vector (or null for ones).
struct DevicePass {
  const double* row_v = nullptr;
  const double* row_vabs = nullptr;
  const double* col_u = nullptr;
  const double* col_uabs = nullptr;
  double* row_out = nullptr;
  double* row_abs = nullptr;
  double* col_out = nullptr;
  double* col_abs = nullptr;
};

// ---- kernel launchers

// Doubles of scratch a pass over R rows and Cc columns needs (column partials).
size_t pass_scratch_doubles(int64_t R, int64_t Cc);
// Runs `pass` over X[R, Cc]; partials: device scratch of pass_scratch_doubles(R, Cc) doubles.
Status launch_pass(const float* X, int64_t R, int64_t Cc, const DevicePass& pass, double* partials,
                   cudaStream_t stream);
// Doubles of workspace the checks of p take (the most of encode, encode_weighted and measure: line
// vectors plus pass partials), and the index weights they read (1..n).
size_t workspace_doubles(const GemmProblem& p);
int64_t weights_needed(const GemmProblem& p);
// out[i] = i + 1 for i < n (the index weights).
Status launch_fill_weights(double* out, int64_t n, cudaStream_t stream);
// out[0] = value, out[1] = abs of element (row, col) of p's output (see ChecksumKernels::reference).
Status launch_element_reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                                double* out, cudaStream_t stream);
// *flag |= OR of the bits of x[0..n) (flag zeroed by the caller).
Status launch_or_bits(const float* x, size_t n, unsigned* flag, cudaStream_t stream);

// ---- ChecksumKernels on a CudaBackend's memory

class CudaChecksumKernels final : public ChecksumKernels {
 public:
  // backend: not owned, outlives this object.
  explicit CudaChecksumKernels(kernels::cuda::CudaBackend* backend);
  ~CudaChecksumKernels() override;
  CudaChecksumKernels(const CudaChecksumKernels&) = delete;
  CudaChecksumKernels& operator=(const CudaChecksumKernels&) = delete;

  Status encode(const GemmProblem& p, const float* before, GemmEncoding* out) override;
  Status encode_weighted(const GemmProblem& p, const float* before, GemmEncoding* out) override;
  Status measure(const GemmProblem& p, const float* c, bool weighted, LineSums* out) override;
  Status reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                   ElementReference* out) override;
  Status read(const float* c, size_t index, float* value) override;
  Status write(float* c, size_t index, float value) override;
  Status copy(float* dst, const float* src, size_t n) override;
  Status all_zero(const float* x, size_t n, bool* zero) override;
  // The workspace, weights and single-value buffer the checks of `problems` take (device memory).
  Status working_bytes(std::span<const GemmProblem> problems, uint64_t* bytes) const override;
  Status reserve_working(std::span<const GemmProblem> problems) override;
  uint64_t held_bytes() const override;

 private:
  // Grows the device workspace to at least `doubles` doubles (waits for the stream first): to exactly
  // that many when `exact`, else to at least twice what it had, so on-demand growth is rare.
  Status reserve(size_t doubles, bool exact = false);
  // Device weights 1..n (kept, grown on demand).
  Status weights(int64_t n, const double** out);
  Status small(double** out);
  Status pass(const float* X, int64_t R, int64_t Cc, const DevicePass& p);
  // Copies n doubles from the device to host vector *dst (resized), on the stream.
  Status fetch(const double* src, int64_t n, std::vector<double>* dst);
  // Adds the plain (and, with abs, magnitude) line sums of `before` to the host vectors.
  Status add_before(const float* before, int64_t M, int64_t Nn, const double* row_w, const double* col_w,
                    std::vector<double>* row, std::vector<double>* col, std::vector<double>* row_abs,
                    std::vector<double>* col_abs);

  kernels::cuda::CudaBackend* backend_;
  cudaStream_t stream_;
  double* work_ = nullptr;  // vectors and pass partials
  size_t work_doubles_ = 0;
  double* weights_ = nullptr;
  int64_t weights_n_ = 0;
  double* small_ = nullptr;  // device: reference value and abs, then the all_zero flag
  std::vector<double> tmp_[4];
  std::vector<float> bias_;
};

}  // namespace perigee::fault::cuda
