// ABFT for the Backend's GEMMs: host checksum passes (HostChecksumKernels) and the detect / locate /
// correct logic (AbftGemm). Every sum is in double with a fixed order: row sums use 8 interleaved
// lanes combined in a fixed tree, column sums are cut into fixed blocks of 64 columns x 1024 rows
// whose partial sums are added in row-block order. Partitions depend on shapes only, so checksums,
// verdicts and corrections do not depend on the thread count.
#include "fault/abft_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

namespace perigee::fault {
namespace {

// Compiles the marked function for AVX-512, AVX2 and baseline x86-64 and picks one at load time
// (the lanes are explicit in the source and contraction is off, so every clone gives the same bits).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PERIGEE_FAULT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PERIGEE_FAULT_CLONES
#endif

constexpr int64_t kLanes = 8;
constexpr int64_t kColBlock = 64;               // columns per column-sum task
constexpr int64_t kRowBlock = 1024;             // rows per column-sum task
constexpr int64_t kParallelMin = 1 << 15;       // elements below which a pass stays serial
constexpr size_t kCopyChunk = size_t{1} << 18;  // floats per parallel copy chunk
constexpr double kDoubleEps = 0x1p-53;
constexpr double kFloatTiny = 0x1p-149;  // smallest fp32 subnormal: absolute rounding floor

inline double lane_tree(const double* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// out[0] = sum x v0, out[1] = sum x v1, out[2] = sum |x| v2 over one row of n floats.
PERIGEE_FAULT_CLONES
void row_dot3(const float* x, int64_t n, const double* v0, const double* v1, const double* v2, double* out) {
  double s0[kLanes] = {}, s1[kLanes] = {}, s2[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const double v = x[c + l];
      s0[l] += v * v0[c + l];
      s1[l] += v * v1[c + l];
      s2[l] += std::fabs(v) * v2[c + l];
    }
  }
  for (int64_t l = 0; c + l < n; ++l) {
    const double v = x[c + l];
    s0[l] += v * v0[c + l];
    s1[l] += v * v1[c + l];
    s2[l] += std::fabs(v) * v2[c + l];
  }
  out[0] = lane_tree(s0);
  out[1] = lane_tree(s1);
  out[2] = lane_tree(s2);
}

PERIGEE_FAULT_CLONES
void row_dot2(const float* x, int64_t n, const double* v0, const double* v1, double* out) {
  double s0[kLanes] = {}, s1[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const double v = x[c + l];
      s0[l] += v * v0[c + l];
      s1[l] += v * v1[c + l];
    }
  }
  for (int64_t l = 0; c + l < n; ++l) {
    const double v = x[c + l];
    s0[l] += v * v0[c + l];
    s1[l] += v * v1[c + l];
  }
  out[0] = lane_tree(s0);
  out[1] = lane_tree(s1);
}

// s_k[j] += sum over rows r in [0, rows) of u_k[r] * X[r, j] (|X| for k = 2), j < w <= kColBlock.
PERIGEE_FAULT_CLONES
void col_block3(const float* X, int64_t ld, int64_t rows, int64_t w, const double* u0, const double* u1,
                const double* u2, double* s0, double* s1, double* s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = X + r * ld;
    const double a = u0[r], b = u1[r], c = u2[r];
    for (int64_t j = 0; j < w; ++j) {
      const double v = x[j];
      s0[j] += a * v;
      s1[j] += b * v;
      s2[j] += c * std::fabs(v);
    }
  }
}

PERIGEE_FAULT_CLONES
void col_block2(const float* X, int64_t ld, int64_t rows, int64_t w, const double* u0, const double* u1,
                double* s0, double* s1) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = X + r * ld;
    const double a = u0[r], b = u1[r];
    for (int64_t j = 0; j < w; ++j) {
      const double v = x[j];
      s0[j] += a * v;
      s1[j] += b * v;
    }
  }
}

// For a row-major X[R, Cc]: o0[r] = X[r,:] . v0, o1[r] = X[r,:] . v1, o2[r] = |X[r,:]| . v2 (o2, v2
// null: not computed).
void row_dots(const float* X, int64_t R, int64_t Cc, const double* v0, const double* v1, const double* v2,
              double* o0, double* o1, double* o2, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (R * Cc >= kParallelMin && R > 1)
  for (int64_t r = 0; r < R; ++r) {
    double out[3];
    if (o2 != nullptr) {
      row_dot3(X + r * Cc, Cc, v0, v1, v2, out);
      o2[r] = out[2];
    } else {
      row_dot2(X + r * Cc, Cc, v0, v1, out);
    }
    o0[r] = out[0];
    o1[r] = out[1];
  }
}

// For a row-major X[R, Cc]: o0[c] = u0 . X[:,c], o1[c] = u1 . X[:,c], o2[c] = u2 . |X[:,c]| (o2, u2
// null: not computed). Tasks are (64-column block, 1024-row block); row blocks are added in order.
void col_dots(const float* X, int64_t R, int64_t Cc, const double* u0, const double* u1, const double* u2,
              double* o0, double* o1, double* o2, int threads, std::vector<double>* scratch) {
  const int64_t cblocks = (Cc + kColBlock - 1) / kColBlock;
  const int64_t rblocks = (R + kRowBlock - 1) / kRowBlock;
  const int64_t tasks = cblocks * rblocks;
  const int64_t stride = 3 * kColBlock;
  scratch->assign(static_cast<size_t>(tasks * stride), 0.0);
  double* part = scratch->data();
#pragma omp parallel for schedule(static) num_threads(threads) if (R * Cc >= kParallelMin && tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t cb = t % cblocks, rb = t / cblocks;
    const int64_t c0 = cb * kColBlock, r0 = rb * kRowBlock;
    const int64_t w = std::min(kColBlock, Cc - c0), rows = std::min(kRowBlock, R - r0);
    double* s = part + t * stride;
    if (o2 != nullptr) {
      col_block3(X + r0 * Cc + c0, Cc, rows, w, u0 + r0, u1 + r0, u2 + r0, s, s + kColBlock,
                 s + 2 * kColBlock);
    } else {
      col_block2(X + r0 * Cc + c0, Cc, rows, w, u0 + r0, u1 + r0, s, s + kColBlock);
    }
  }
#pragma omp parallel for schedule(static) num_threads(threads) if (tasks > 64)
  for (int64_t cb = 0; cb < cblocks; ++cb) {
    const int64_t c0 = cb * kColBlock, w = std::min(kColBlock, Cc - c0);
    for (int64_t j = 0; j < w; ++j) {
      double a = 0.0, b = 0.0, c = 0.0;
      for (int64_t rb = 0; rb < rblocks; ++rb) {
        const double* s = part + (rb * cblocks + cb) * stride;
        a += s[j];
        b += s[kColBlock + j];
        c += s[2 * kColBlock + j];
      }
      o0[c0 + j] = a;
      o1[c0 + j] = b;
      if (o2 != nullptr) o2[c0 + j] = c;
    }
  }
}

void resize_lines(LineSums* s, int64_t M, int64_t Nn) {
  s->row.assign(static_cast<size_t>(M), 0.0);
  s->row_weighted.assign(static_cast<size_t>(M), 0.0);
  s->col.assign(static_cast<size_t>(Nn), 0.0);
  s->col_weighted.assign(static_cast<size_t>(Nn), 0.0);
}

bool finite_and_bounded(const std::vector<double>& v, double limit) {
  for (double x : v) {
    if (!(std::fabs(x) <= limit)) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- names, problems

const char* gemm_kind_name(GemmKind kind) {
  switch (kind) {
    case GemmKind::kForward:
      return "forward";
    case GemmKind::kBackwardInput:
      return "backward_input";
    case GemmKind::kBackwardWeight:
      return "backward_weight";
    case GemmKind::kBackwardBias:
      return "backward_bias";
  }
  return "unknown";
}

const char* abft_outcome_name(AbftOutcome outcome) {
  switch (outcome) {
    case AbftOutcome::kClean:
      return "clean";
    case AbftOutcome::kCorrected:
      return "corrected";
    case AbftOutcome::kRecompute:
      return "recompute";
    case AbftOutcome::kRecomputed:
      return "recomputed";
    case AbftOutcome::kTolerated:
      return "tolerated";
    case AbftOutcome::kEscalated:
      return "escalated";
    case AbftOutcome::kUnverifiable:
      return "unverifiable";
  }
  return "unknown";
}

GemmProblem GemmProblem::forward(const float* inp, const float* weight, const float* bias, int N, int C,
                                 int OC) {
  GemmProblem p;
  p.kind = GemmKind::kForward;
  p.inp = inp;
  p.weight = weight;
  p.bias = bias;
  p.N = N;
  p.C = C;
  p.OC = OC;
  return p;
}

GemmProblem GemmProblem::backward_input(const float* dout, const float* weight, int N, int C, int OC) {
  GemmProblem p;
  p.kind = GemmKind::kBackwardInput;
  p.dout = dout;
  p.weight = weight;
  p.N = N;
  p.C = C;
  p.OC = OC;
  return p;
}

GemmProblem GemmProblem::backward_weight(const float* dout, const float* inp, int N, int C, int OC) {
  GemmProblem p;
  p.kind = GemmKind::kBackwardWeight;
  p.dout = dout;
  p.inp = inp;
  p.N = N;
  p.C = C;
  p.OC = OC;
  return p;
}

GemmProblem GemmProblem::backward_bias(const float* dout, int N, int OC) {
  GemmProblem p;
  p.kind = GemmKind::kBackwardBias;
  p.dout = dout;
  p.N = N;
  p.C = 1;
  p.OC = OC;
  return p;
}

int64_t GemmProblem::rows() const {
  switch (kind) {
    case GemmKind::kForward:
    case GemmKind::kBackwardInput:
      return N;
    case GemmKind::kBackwardWeight:
      return OC;
    case GemmKind::kBackwardBias:
      return 1;
  }
  return 0;
}

int64_t GemmProblem::cols() const {
  switch (kind) {
    case GemmKind::kForward:
    case GemmKind::kBackwardBias:
      return OC;
    case GemmKind::kBackwardInput:
    case GemmKind::kBackwardWeight:
      return C;
  }
  return 0;
}

int64_t GemmProblem::inner() const {
  switch (kind) {
    case GemmKind::kForward:
      return C;
    case GemmKind::kBackwardInput:
      return OC;
    case GemmKind::kBackwardWeight:
    case GemmKind::kBackwardBias:
      return N;
  }
  return 0;
}

Status GemmProblem::validate() const {
  PERIGEE_REQUIRE(N > 0 && C > 0 && OC > 0, StatusCode::kInvalidArgument, "abft ", gemm_kind_name(kind),
                  ": dimensions N=", N, " C=", C, " OC=", OC, " must be positive");
  const bool need_inp = kind == GemmKind::kForward || kind == GemmKind::kBackwardWeight;
  const bool need_weight = kind == GemmKind::kForward || kind == GemmKind::kBackwardInput;
  const bool need_dout = kind != GemmKind::kForward;
  PERIGEE_REQUIRE(
      (!need_inp || inp != nullptr) && (!need_weight || weight != nullptr) && (!need_dout || dout != nullptr),
      StatusCode::kInvalidArgument, "abft ", gemm_kind_name(kind), ": an operand is null");
  return Status::ok();
}

// ---------------------------------------------------------------- host checksum kernels

HostChecksumKernels::HostChecksumKernels(int threads)
    : threads_(threads > 0 ? threads : std::max(1, omp_get_max_threads())) {}

const double* HostChecksumKernels::ones(int64_t n) {
  if (static_cast<int64_t>(ones_.size()) < n) ones_.assign(static_cast<size_t>(n), 1.0);
  return ones_.data();
}

const double* HostChecksumKernels::weights(int64_t n) {
  if (static_cast<int64_t>(weights_.size()) < n) {
    weights_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) weights_[static_cast<size_t>(i)] = static_cast<double>(i + 1);
  }
  return weights_.data();
}

Status HostChecksumKernels::encode(const GemmProblem& p, const float* before, GemmEncoding* out) {
  PERIGEE_CHECK(p.validate());
  const int64_t N = p.N, C = p.C, OC = p.OC;
  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const int64_t longest = std::max({N, C, OC});
  ones(longest);  // grow both caches first: the pointers below must stay valid
  weights(longest);
  resize_lines(&out->expected, M, Nn);
  out->row_abs.assign(static_cast<size_t>(M), 0.0);
  out->col_abs.assign(static_cast<size_t>(Nn), 0.0);
  for (auto* v : {&a0_, &a1_, &a2_, &b0_, &b1_, &b2_}) v->assign(static_cast<size_t>(K), 0.0);
  LineSums& e = out->expected;
  std::vector<double> scratch;
  const int t = threads_;
  switch (p.kind) {
    case GemmKind::kForward: {
      // A = inp [N, C], B = weight^T: alpha = (e, w, |.|)^T inp, beta = weight^T (e, w, |.|).
      col_dots(p.inp, N, C, ones(N), weights(N), ones(N), a0_.data(), a1_.data(), a2_.data(), t, &scratch);
      col_dots(p.weight, OC, C, ones(OC), weights(OC), ones(OC), b0_.data(), b1_.data(), b2_.data(), t,
               &scratch);
      row_dots(p.weight, OC, C, a0_.data(), a1_.data(), a2_.data(), e.col.data(), e.col_weighted.data(),
               out->col_abs.data(), t);
      row_dots(p.inp, N, C, b0_.data(), b1_.data(), b2_.data(), e.row.data(), e.row_weighted.data(),
               out->row_abs.data(), t);
      if (p.bias != nullptr) {
        const double n = static_cast<double>(N), nw = n * (n + 1.0) / 2.0;
        double sb = 0.0, sbw = 0.0, sba = 0.0;
        for (int64_t j = 0; j < OC; ++j) {
          const double b = p.bias[j];
          e.col[j] += n * b;
          e.col_weighted[j] += nw * b;
          out->col_abs[j] += n * std::fabs(b);
          sb += b;
          sbw += static_cast<double>(j + 1) * b;
          sba += std::fabs(b);
        }
        for (int64_t i = 0; i < N; ++i) {
          e.row[i] += sb;
          e.row_weighted[i] += sbw;
          out->row_abs[i] += sba;
        }
      }
      break;
    }
    case GemmKind::kBackwardInput: {
      // A = dout [N, OC], B = weight [OC, C].
      col_dots(p.dout, N, OC, ones(N), weights(N), ones(N), a0_.data(), a1_.data(), a2_.data(), t, &scratch);
      row_dots(p.weight, OC, C, ones(C), weights(C), ones(C), b0_.data(), b1_.data(), b2_.data(), t);
      col_dots(p.weight, OC, C, a0_.data(), a1_.data(), a2_.data(), e.col.data(), e.col_weighted.data(),
               out->col_abs.data(), t, &scratch);
      row_dots(p.dout, N, OC, b0_.data(), b1_.data(), b2_.data(), e.row.data(), e.row_weighted.data(),
               out->row_abs.data(), t);
      break;
    }
    case GemmKind::kBackwardWeight: {
      // A = dout^T [OC, N], B = inp [N, C]: alpha_k = row k of dout against (e, w, |.|).
      row_dots(p.dout, N, OC, ones(OC), weights(OC), ones(OC), a0_.data(), a1_.data(), a2_.data(), t);
      row_dots(p.inp, N, C, ones(C), weights(C), ones(C), b0_.data(), b1_.data(), b2_.data(), t);
      col_dots(p.inp, N, C, a0_.data(), a1_.data(), a2_.data(), e.col.data(), e.col_weighted.data(),
               out->col_abs.data(), t, &scratch);
      col_dots(p.dout, N, OC, b0_.data(), b1_.data(), b2_.data(), e.row.data(), e.row_weighted.data(),
               out->row_abs.data(), t, &scratch);
      break;
    }
    case GemmKind::kBackwardBias: {
      // A = e^T [1, N], B = dout [N, OC]: each column is one element; row 0 has weight 1.
      col_dots(p.dout, N, OC, ones(N), ones(N), ones(N), e.col.data(), e.col_weighted.data(),
               out->col_abs.data(), t, &scratch);
      double s = 0.0, sw = 0.0, sa = 0.0;
      for (int64_t j = 0; j < OC; ++j) {
        s += e.col[j];
        sw += static_cast<double>(j + 1) * e.col[j];
        sa += out->col_abs[j];
      }
      e.row[0] = s;
      e.row_weighted[0] = sw;
      out->row_abs[0] = sa;
      break;
    }
  }
  if (before != nullptr && p.accumulates()) {
    // The prior content is one more term of every element: its sums add to the prediction and S.
    std::vector<double> r0(M), r1(M), r2(M), c0(Nn), c1(Nn), c2(Nn);
    row_dots(before, M, Nn, ones(Nn), weights(Nn), ones(Nn), r0.data(), r1.data(), r2.data(), t);
    col_dots(before, M, Nn, ones(M), weights(M), ones(M), c0.data(), c1.data(), c2.data(), t, &scratch);
    for (int64_t i = 0; i < M; ++i) {
      e.row[i] += r0[i];
      e.row_weighted[i] += r1[i];
      out->row_abs[i] += r2[i];
    }
    for (int64_t j = 0; j < Nn; ++j) {
      e.col[j] += c0[j];
      e.col_weighted[j] += c1[j];
      out->col_abs[j] += c2[j];
    }
  }
  return Status::ok();
}

Status HostChecksumKernels::measure(const GemmProblem& p, const float* c, LineSums* out) {
  PERIGEE_REQUIRE(c != nullptr, StatusCode::kInvalidArgument, "abft measure: null output");
  const int64_t M = p.rows(), Nn = p.cols();
  ones(std::max(M, Nn));
  weights(std::max(M, Nn));
  resize_lines(out, M, Nn);
  std::vector<double> scratch;
  row_dots(c, M, Nn, ones(Nn), weights(Nn), nullptr, out->row.data(), out->row_weighted.data(), nullptr,
           threads_);
  col_dots(c, M, Nn, ones(M), weights(M), nullptr, out->col.data(), out->col_weighted.data(), nullptr,
           threads_, &scratch);
  return Status::ok();
}

Status HostChecksumKernels::reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                                      ElementReference* out) {
  PERIGEE_REQUIRE(row >= 0 && row < p.rows() && col >= 0 && col < p.cols(), StatusCode::kInvalidArgument,
                  "abft reference: element (", row, ", ", col, ") outside [", p.rows(), ", ", p.cols(), "]");
  const int64_t C = p.C, OC = p.OC, K = p.inner();
  double s = 0.0, a = 0.0;
  auto add = [&](double x, double y) {
    const double t = x * y;  // exact: two floats' product fits in a double
    s += t;
    a += std::fabs(t);
  };
  switch (p.kind) {
    case GemmKind::kForward:
      for (int64_t k = 0; k < K; ++k) add(p.inp[row * C + k], p.weight[col * C + k]);
      if (p.bias != nullptr) add(p.bias[col], 1.0);
      break;
    case GemmKind::kBackwardInput:
      for (int64_t k = 0; k < K; ++k) add(p.dout[row * OC + k], p.weight[k * C + col]);
      break;
    case GemmKind::kBackwardWeight:
      for (int64_t k = 0; k < K; ++k) add(p.dout[k * OC + row], p.inp[k * C + col]);
      break;
    case GemmKind::kBackwardBias:
      for (int64_t k = 0; k < K; ++k) add(p.dout[k * OC + col], 1.0);
      break;
  }
  if (before != nullptr && p.accumulates()) add(before[row * p.cols() + col], 1.0);
  out->value = s;
  out->abs = a;
  return Status::ok();
}

Status HostChecksumKernels::read(const float* c, size_t index, float* value) {
  *value = c[index];
  return Status::ok();
}

Status HostChecksumKernels::write(float* c, size_t index, float value) {
  c[index] = value;
  return Status::ok();
}

Status HostChecksumKernels::copy(float* dst, const float* src, size_t n) {
  if (n == 0 || dst == src) return Status::ok();
  PERIGEE_REQUIRE(dst != nullptr && src != nullptr, StatusCode::kInvalidArgument, "abft copy: null pointer");
  const auto chunks = static_cast<int64_t>((n + kCopyChunk - 1) / kCopyChunk);
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kCopyChunk;
    std::memcpy(dst + begin, src + begin, std::min(kCopyChunk, n - begin) * sizeof(float));
  }
  return Status::ok();
}

// ---------------------------------------------------------------- AbftGemm

AbftGemm::AbftGemm(ChecksumKernels* kernels, const AbftOptions& options)
    : kernels_(kernels), options_(options) {}

Status AbftGemm::encode(const GemmProblem& p, const float* before) {
  PERIGEE_REQUIRE(kernels_ != nullptr, StatusCode::kInvalidArgument, "abft: no checksum kernels");
  PERIGEE_CHECK(p.validate());
  problem_ = p;
  before_ = p.accumulates() ? before : nullptr;
  verifiable_ = false;
  unverifiable_reason_.clear();
  actual_ = {};
  PERIGEE_CHECK(kernels_->encode(p, before_, &enc_));

  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const double u = options_.unit_roundoff;
  const double terms = static_cast<double>(K + 2);  // K products, bias or prior value, final rounding
  const double gamma =
      terms * u < 0.5 ? terms * u / (1.0 - terms * u) : std::numeric_limits<double>::infinity();
  const double tau_scale = options_.threshold_scale * u * std::sqrt(terms);
  // eta: rounding of the double checksums themselves (K + n terms) and fp32 underflow (absolute).
  auto fill = [&](const std::vector<double>& S, int64_t n, std::vector<double>* tau,
                  std::vector<double>* beta) {
    tau->resize(S.size());
    beta->resize(S.size());
    const double rel = 2.0 * kDoubleEps * static_cast<double>(K + n + 4);
    const double abs_floor = terms * static_cast<double>(n) * kFloatTiny;
    for (size_t l = 0; l < S.size(); ++l) {
      const double eta = rel * S[l] + abs_floor;
      (*tau)[l] = tau_scale * S[l] + eta;
      (*beta)[l] = gamma * S[l] + eta;
    }
  };
  fill(enc_.row_abs, Nn, &row_tau_, &row_beta_);
  fill(enc_.col_abs, M, &col_tau_, &col_beta_);

  // Lines whose magnitude sum reaches fp32 range could overflow legitimately; non-finite operands
  // leave nothing to predict. Either way the output is not checked.
  const double limit = 0.5 * static_cast<double>(FLT_MAX);
  if (!std::isfinite(gamma)) {
    unverifiable_reason_ = str_cat("inner dimension ", K, " too large for the rounding bound");
  } else if (!finite_and_bounded(enc_.row_abs, limit) || !finite_and_bounded(enc_.col_abs, limit)) {
    unverifiable_reason_ = "operands not finite, or products reach the fp32 range";
  } else {
    verifiable_ = true;
  }
  return Status::ok();
}

double AbftGemm::row_residual(int64_t i) const {
  if (actual_.row.empty()) return 0.0;
  return actual_.row[i] - enc_.expected.row[i];
}

double AbftGemm::col_residual(int64_t j) const {
  if (actual_.col.empty()) return 0.0;
  return actual_.col[j] - enc_.expected.col[j];
}

AbftGemm::Verdict AbftGemm::evaluate() const {
  constexpr size_t kKeep = 4;  // flagged lines remembered (the counts are exact)
  Verdict v;
  auto scan = [&](const std::vector<double>& got, const std::vector<double>& want,
                  const std::vector<double>& tau, const std::vector<double>& beta,
                  std::vector<int64_t>* flagged, int64_t* count) {
    for (size_t l = 0; l < got.size(); ++l) {
      const double r = std::fabs(got[l] - want[l]);  // NaN when the output holds NaN or Inf
      const double ratio =
          tau[l] > 0.0 ? r / tau[l] : (r == 0.0 ? 0.0 : std::numeric_limits<double>::infinity());
      v.max_ratio =
          std::isnan(ratio) ? std::numeric_limits<double>::infinity() : std::max(v.max_ratio, ratio);
      if (!(r <= beta[l])) v.within_bound = false;
      if (!(r <= tau[l])) {
        ++*count;
        if (flagged->size() < kKeep) flagged->push_back(static_cast<int64_t>(l));
      }
    }
  };
  scan(actual_.row, enc_.expected.row, row_tau_, row_beta_, &v.rows, &v.rows_flagged);
  scan(actual_.col, enc_.expected.col, col_tau_, col_beta_, &v.cols, &v.cols_flagged);
  return v;
}

// The element index along a flagged line from its weighted residual: (sum w r) / (sum r) = w of the
// wrong element when only that element is off. -1 when the ratio is not a usable index.
int64_t AbftGemm::locate_by_weight(bool row_line, int64_t line) const {
  const double r =
      row_line ? actual_.row[line] - enc_.expected.row[line] : actual_.col[line] - enc_.expected.col[line];
  const double rw = row_line ? actual_.row_weighted[line] - enc_.expected.row_weighted[line]
                             : actual_.col_weighted[line] - enc_.expected.col_weighted[line];
  const int64_t n = row_line ? problem_.cols() : problem_.rows();
  if (!std::isfinite(r) || !std::isfinite(rw) || r == 0.0) return -1;
  const double w = std::nearbyint(rw / r);
  if (!(w >= 1.0 && w <= static_cast<double>(n))) return -1;
  return static_cast<int64_t>(w) - 1;
}

Status AbftGemm::try_element(float* c, int64_t i, int64_t j, bool* changed, Correction* corr) {
  *changed = false;
  const size_t index = static_cast<size_t>(i * problem_.cols() + j);
  float old = 0.0f;
  PERIGEE_CHECK(kernels_->read(c, index, &old));
  ElementReference ref;
  PERIGEE_CHECK(kernels_->reference(problem_, before_, i, j, &ref));
  // Worst-case rounding of this element (the same bound as beta, for one element).
  const double terms = static_cast<double>(problem_.inner() + 2);
  const double u = options_.unit_roundoff;
  const double tol =
      (terms * u / (1.0 - terms * u) + 2.0 * kDoubleEps * (terms + 2.0)) * ref.abs + terms * kFloatTiny;
  auto dist = [&](float v) {
    return std::isfinite(v) ? std::fabs(static_cast<double>(v) - ref.value)
                            : std::numeric_limits<double>::infinity();
  };
  const uint32_t bits = std::bit_cast<uint32_t>(old);
  const double d_old = dist(old);
  double best1 = std::numeric_limits<double>::infinity();
  uint32_t mask1 = 0;
  for (int b = 0; b < 32; ++b) {
    const double d = dist(std::bit_cast<float>(bits ^ (1u << b)));
    if (d < best1) {
      best1 = d;
      mask1 = 1u << b;
    }
  }
  uint32_t mask = 0;
  float value = old;
  if (best1 <= tol && best1 < d_old) {
    mask = mask1;  // a single bit flip of the stored value explains it: restore those exact bits
  } else if (d_old > tol) {
    double best2 = std::numeric_limits<double>::infinity();
    uint32_t mask2 = 0;
    for (int b1 = 0; b1 < 32; ++b1) {
      for (int b2 = b1 + 1; b2 < 32; ++b2) {
        const uint32_t m = (1u << b1) | (1u << b2);
        const double d = dist(std::bit_cast<float>(bits ^ m));
        if (d < best2) {
          best2 = d;
          mask2 = m;
        }
      }
    }
    if (best2 <= tol) {
      mask = mask2;
    } else if (std::fabs(ref.value) <= static_cast<double>(FLT_MAX)) {
      value = static_cast<float>(ref.value);  // not a 1- or 2-bit flip: the rounded exact value
    } else {
      return Status::ok();
    }
  } else {
    return Status::ok();  // consistent with its reference: not this element
  }
  if (mask != 0) value = std::bit_cast<float>(bits ^ mask);
  PERIGEE_CHECK(kernels_->write(c, index, value));
  *changed = true;
  *corr = Correction{i, j, old, value, mask};
  return Status::ok();
}

// The element of a flagged line that deviates most from its reference, relative to its rounding scale.
Status AbftGemm::scan_line(float* c, bool row_line, int64_t line, int64_t* best) {
  *best = -1;
  const int64_t n = row_line ? problem_.cols() : problem_.rows();
  double worst = -1.0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = row_line ? line : k, j = row_line ? k : line;
    float v = 0.0f;
    PERIGEE_CHECK(kernels_->read(c, static_cast<size_t>(i * problem_.cols() + j), &v));
    ElementReference ref;
    PERIGEE_CHECK(kernels_->reference(problem_, before_, i, j, &ref));
    const double dev = std::isfinite(v) ? std::fabs(static_cast<double>(v) - ref.value) /
                                              std::max(ref.abs, std::numeric_limits<double>::min())
                                        : std::numeric_limits<double>::infinity();
    if (dev > worst) {
      worst = dev;
      *best = k;
    }
  }
  return Status::ok();
}

Status AbftGemm::check(float* c, AbftCheck* result, bool allow_correction) {
  *result = AbftCheck{};
  PERIGEE_REQUIRE(kernels_ != nullptr && !enc_.row_abs.empty(), StatusCode::kInternal,
                  "abft check before encode");
  if (!verifiable_) {
    result->outcome = AbftOutcome::kUnverifiable;
    result->detail = unverifiable_reason_;
    return Status::ok();
  }
  PERIGEE_CHECK(kernels_->measure(problem_, c, &actual_));
  const Verdict v = evaluate();
  result->rows_flagged = v.rows_flagged;
  result->cols_flagged = v.cols_flagged;
  result->max_ratio = v.max_ratio;
  result->within_bound = v.within_bound;
  if (v.rows_flagged == 0 && v.cols_flagged == 0) {
    result->outcome = AbftOutcome::kClean;
    return Status::ok();
  }
  result->outcome = AbftOutcome::kRecompute;
  if (!allow_correction) {
    result->detail = str_cat(v.rows_flagged, " rows and ", v.cols_flagged, " columns over threshold");
    return Status::ok();
  }
  if (v.rows_flagged > 1 || v.cols_flagged > 1) {
    result->detail = str_cat(v.rows_flagged, " rows and ", v.cols_flagged,
                             " columns over threshold: more than one wrong element");
    return Status::ok();
  }
  // One flagged line of each kind at most: the wrong element is at their crossing, or along the one
  // flagged line where its weighted sum points.
  const LineSums first = actual_;
  int64_t i = v.rows_flagged == 1 ? v.rows[0] : -1;
  int64_t j = v.cols_flagged == 1 ? v.cols[0] : -1;
  const bool row_only = j < 0, col_only = i < 0;
  if (i < 0) i = locate_by_weight(false, j);
  if (j < 0) j = locate_by_weight(true, i);

  auto attempt = [&](int64_t ei, int64_t ej, bool* done) -> Status {
    *done = false;
    bool changed = false;
    Correction corr;
    PERIGEE_CHECK(try_element(c, ei, ej, &changed, &corr));
    if (!changed) return Status::ok();
    PERIGEE_CHECK(kernels_->measure(problem_, c, &actual_));
    const Verdict after = evaluate();
    if (after.rows_flagged == 0 && after.cols_flagged == 0) {
      *done = true;
      result->outcome = AbftOutcome::kCorrected;
      result->corrected = true;
      result->correction = corr;
      return Status::ok();
    }
    PERIGEE_CHECK(kernels_->write(c, static_cast<size_t>(ei * problem_.cols() + ej), corr.old_value));
    actual_ = first;
    return Status::ok();
  };
  bool done = false;
  if (i >= 0 && j >= 0) PERIGEE_CHECK(attempt(i, j, &done));
  if (!done && (row_only || col_only)) {
    const int64_t line = row_only ? i : j;
    int64_t k = -1;
    PERIGEE_CHECK(scan_line(c, row_only, line, &k));
    const int64_t si = row_only ? line : k, sj = row_only ? k : line;
    if (k >= 0 && !(si == i && sj == j)) PERIGEE_CHECK(attempt(si, sj, &done));
  }
  if (!done) {
    result->detail = str_cat(v.rows_flagged, " row and ", v.cols_flagged,
                             " column over threshold, but no single element explains the mismatch");
  }
  return Status::ok();
}

}  // namespace perigee::fault
