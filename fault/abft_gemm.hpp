// Algorithm-based fault tolerance (ABFT) for the training GEMMs of kernels::Backend.
// For an output C[M, Nn] (+)= A[M, K] B[K, Nn] (+ bias) in any of the Backend's layouts, the
// operands predict the row sums A (B e), the column sums (e^T A) B, and the index-weighted row and
// column sums (Huang & Abraham, plus weights 1..n to locate an element from one line). The checks
// run in double on the fp32 output; a line is flagged when |measured - predicted| exceeds
//   tau = c * u * sqrt(K + 2) * S + eta,     S = sum over the line of |a_ik| |b_kj| (+ |bias| + |C0|),
// the probabilistic rounding-error size of a K-term fp32 dot product (c calibrated, u = 2^-24); the
// worst-case bound beta = gamma_{K+2} * S + eta (gamma_n = n u / (1 - n u)) tells a calibration miss
// from a fault. One wrong element is located (flagged row x flagged column, or one flagged line and
// its weighted sum) and corrected in place: its exact value is recomputed in double and the element
// is set to the one- or two-bit flip of the stored value that matches it (bit-identical to the clean
// GEMM), else to the rounded exact value; the checks are then re-run. Anything else asks the caller
// to recompute. docs/faults.md has the derivation and the calibration numbers.
//
// Split for devices: ChecksumKernels does the work that reads operand or output memory (O(MK + KNn
// + MNn) matrix-vector passes and single elements); AbftGemm is host logic on the small vectors it
// returns. HostChecksumKernels (fault/host_checksum_kernels.hpp) is the CPU implementation (OpenMP,
// deterministic: every sum has a fixed order whatever the thread count); CudaChecksumKernels
// (fault/cuda/abft_checksums.cuh) supplies the same calls on the GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::fault {

// The four outputs of kernels::Backend::matmul_forward / matmul_backward.
enum class GemmKind : uint8_t {
  kForward,         // out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias      (K = C, overwrites)
  kBackwardInput,   // dinp[N, C] = dout[N, OC] @ weight[OC, C]             (K = OC, written)
  kBackwardWeight,  // dweight[OC, C] += dout[N, OC]^T @ inp[N, C]          (K = N, accumulates)
  kBackwardBias,    // dbias[OC] += column sums of dout, as a [1, OC] GEMM  (K = N, accumulates)
};

const char* gemm_kind_name(GemmKind kind);

inline constexpr double kFp32UnitRoundoff = 0x1p-24;
// GEMMs that round fp32 operands before multiplying (the CUDA backend's precision = "tf32" and
// "bf16") while the checksums see the fp32 operands: each product a*b is computed as
// a(1 + da) * b(1 + db), off by at most (2 r + r^2) |a b| for operands off by at most r relative.
// bf16 rounds to nearest with 7 fraction bits (r = 2^-8, half a unit in the last place: 1 + 2^-8
// rounds to 1); TF32 is taken as truncating to 10 fraction bits (r = 2^-10, the worst case of the two
// conversions tensor cores may apply).
inline constexpr double kBf16OperandRoundoff = 0x1p-7 + 0x1p-16;
inline constexpr double kTf32OperandRoundoff = 0x1p-9 + 0x1p-20;
// c in tau above. Calibration (tests/fault/test_abft_gemm.cpp, docs/faults.md): the largest residual /
// tau over 4096 clean GEMMs of realistic and adversarial value ranges, fp32 and bf16-rounded inputs,
// is 0.22 (a margin of 4.6x).
inline constexpr double kDefaultThresholdScale = 1.0;

struct AbftOptions {
  double unit_roundoff = kFp32UnitRoundoff;  // of the GEMM's arithmetic (fp32 accumulation)
  // Relative error of each product from operands rounded before the GEMM (0: exact fp32 operands).
  // It is a worst case per product, so it adds operand_roundoff * S to both tau and beta of a line
  // (S: the line's magnitude sum) and to the element bound of a correction: errors below the
  // operands' own precision are not faults.
  double operand_roundoff = 0.0;
  double threshold_scale = kDefaultThresholdScale;
  int threads = 0;  // host checksum passes; 0 = omp_get_max_threads() at construction
};

// One output of the Backend's matmul ops with the operands it is computed from (not owned).
struct GemmProblem {
  GemmKind kind = GemmKind::kForward;
  const float* inp = nullptr;     // [N, C]   kForward, kBackwardWeight
  const float* weight = nullptr;  // [OC, C]  kForward, kBackwardInput
  const float* bias = nullptr;    // [OC]     kForward (may be null)
  const float* dout = nullptr;    // [N, OC]  backward kinds
  int N = 0, C = 0, OC = 0;

  static GemmProblem forward(const float* inp, const float* weight, const float* bias, int N, int C, int OC);
  static GemmProblem backward_input(const float* dout, const float* weight, int N, int C, int OC);
  static GemmProblem backward_weight(const float* dout, const float* inp, int N, int C, int OC);
  static GemmProblem backward_bias(const float* dout, int N, int OC);

  int64_t rows() const;   // M of the output
  int64_t cols() const;   // Nn of the output
  int64_t inner() const;  // K, terms per output element
  size_t size() const { return static_cast<size_t>(rows() * cols()); }
  // Whether the backend adds the product onto the output (dweight, dbias) or writes it (out, dinp):
  // the Backend contract of kernels/backend.hpp.
  bool accumulates() const { return kind == GemmKind::kBackwardWeight || kind == GemmKind::kBackwardBias; }
  // kInvalidArgument unless the dimensions are positive and the operands this kind reads are set.
  Status validate() const;
  // The dimensions only (a problem built to size working memory has no operands).
  Status validate_sizes() const;
};

// Row sums, column-index-weighted row sums (weights 1..Nn), column sums and row-index-weighted
// column sums (weights 1..M) of an output, in double.
struct LineSums {
  std::vector<double> row, row_weighted, col, col_weighted;
};

// What the operands predict for an output: its LineSums, and S per line (sum of |term| over every
// product, bias and prior value that enters the line; the rounding-error scale).
struct GemmEncoding {
  LineSums expected;
  std::vector<double> row_abs, col_abs;
};

// One output element recomputed in double: value = sum_k a_ik b_kj (+ bias_j) (+ C0_ij), abs = the
// same sum over absolute values.
struct ElementReference {
  double value = 0.0;
  double abs = 0.0;
};

// Memory-touching half of ABFT; pointers are memory of the device the implementation serves.
// `before` is the output's content before an accumulating GEMM (a snapshot), null when it was zero.
// The weighted sums are only needed to locate an error, so they have calls of their own.
class ChecksumKernels {
 public:
  virtual ~ChecksumKernels() = default;
  // expected.row, expected.col, row_abs, col_abs.
  virtual Status encode(const GemmProblem& p, const float* before, GemmEncoding* out) = 0;
  // expected.row_weighted, expected.col_weighted.
  virtual Status encode_weighted(const GemmProblem& p, const float* before, GemmEncoding* out) = 0;
  // row and col of c; also row_weighted and col_weighted when `weighted`.
  virtual Status measure(const GemmProblem& p, const float* c, bool weighted, LineSums* out) = 0;
  virtual Status reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                           ElementReference* out) = 0;
  virtual Status read(const float* c, size_t index, float* value) = 0;
  virtual Status write(float* c, size_t index, float value) = 0;
  virtual Status copy(float* dst, const float* src, size_t n) = 0;
  // *zero = every one of the n floats has all bits zero (+0.0).
  virtual Status all_zero(const float* x, size_t n, bool* zero) = 0;

  // Working memory of the inner backend's kind (device memory for device kernels) that checking the
  // GEMMs `problems` (sizes and kinds only; operand pointers unused) takes at most: *bytes is set.
  // reserve_working allocates that much up front, so no check grows it half-way through a step, and
  // held_bytes says what is allocated now. The host kernels take host memory only and count 0.
  virtual Status working_bytes(std::span<const GemmProblem> problems, uint64_t* bytes) const {
    (void)problems;
    *bytes = 0;
    return Status::ok();
  }
  virtual Status reserve_working(std::span<const GemmProblem> problems) {
    (void)problems;
    return Status::ok();
  }
  virtual uint64_t held_bytes() const { return 0; }
};

enum class AbftOutcome : uint8_t {
  kClean,         // every line within its threshold
  kCorrected,     // one element located, corrected in place and re-verified
  kRecompute,     // AbftGemm::check only: not correctable in place, the caller recomputes
  kRecomputed,    // recomputed, then clean
  kTolerated,     // after a recompute some line still exceeds tau but all are within beta (rounding)
  kEscalated,     // still mismatching after a recompute: the caller gets an error Status
  kUnverifiable,  // operands not finite or beyond fp32 range: no prediction to check against
};

const char* abft_outcome_name(AbftOutcome outcome);

struct Correction {
  int64_t row = -1;
  int64_t col = -1;
  float old_value = 0.0f;
  float new_value = 0.0f;
  uint32_t flip_mask = 0;  // old ^ new bits when explained as a bit flip; 0: rounded exact value written
};

struct AbftCheck {
  AbftOutcome outcome = AbftOutcome::kClean;
  int64_t rows_flagged = 0;  // lines over tau in the first verification
  int64_t cols_flagged = 0;
  double max_ratio = 0.0;    // max |residual| / tau over all lines (first verification)
  bool within_bound = true;  // every |residual| <= beta (first verification)
  bool corrected = false;
  Correction correction;
  std::string detail;  // why a recompute is needed, or why the output is unverifiable
};

// Host logic of ABFT for one output; reusable across problems (vectors are kept).
class AbftGemm {
 public:
  // kernels: not owned, outlives this object.
  explicit AbftGemm(ChecksumKernels* kernels, const AbftOptions& options = {});

  // Predicts the output of p from its operands and `before` (see ChecksumKernels), and sets the
  // per-line thresholds. Operands must not change until the last check() of this problem.
  Status encode(const GemmProblem& p, const float* before);

  // Verifies c (the output of the encoded problem). With allow_correction, one located wrong element
  // is corrected in place (kCorrected); otherwise mismatches give kRecompute. The result also says
  // kClean or kUnverifiable.
  Status check(float* c, AbftCheck* result, bool allow_correction = true);

  const GemmProblem& problem() const { return problem_; }
  // Thresholds (tau) and rigorous bounds (beta) of the encoded problem's lines.
  double row_threshold(int64_t i) const { return row_tau_[static_cast<size_t>(i)]; }
  double col_threshold(int64_t j) const { return col_tau_[static_cast<size_t>(j)]; }
  double row_bound(int64_t i) const { return row_beta_[static_cast<size_t>(i)]; }
  double col_bound(int64_t j) const { return col_beta_[static_cast<size_t>(j)]; }
  // measured - predicted of the last verification, per line.
  double row_residual(int64_t i) const;
  double col_residual(int64_t j) const;

 private:
  struct Verdict {
    std::vector<int64_t> rows, cols;  // flagged lines (at most a few kept, counts exact)
    int64_t rows_flagged = 0, cols_flagged = 0;
    double max_ratio = 0.0;
    bool within_bound = true;
  };
  Verdict evaluate() const;
  int64_t locate_by_weight(bool row_line, int64_t line) const;
  // Chooses the corrected value of element (i, j) and writes it; *changed false when the element is
  // consistent with its reference and no bit flip explains it better.
  Status try_element(float* c, int64_t i, int64_t j, bool* changed, Correction* corr);
  Status scan_line(float* c, bool row_line, int64_t line, int64_t* best);

  ChecksumKernels* kernels_;
  AbftOptions options_;
  GemmProblem problem_;
  const float* before_ = nullptr;
  bool verifiable_ = false;
  bool weighted_encoded_ = false;
  std::string unverifiable_reason_;
  GemmEncoding enc_;
  LineSums actual_;
  std::vector<double> row_tau_, col_tau_, row_beta_, col_beta_;
};

}  // namespace perigee::fault
