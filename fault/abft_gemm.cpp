// ABFT for the Backend's GEMMs: the problem descriptions (GemmProblem) and the detect / locate /
// correct logic (AbftGemm) on the small vectors a ChecksumKernels returns. The host checksum passes
// (HostChecksumKernels) are in fault/host_checksum_kernels.cpp. Verdicts and corrections depend on
// those sums only, so they do not depend on the thread count either.
#include "fault/abft_gemm.hpp"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

namespace perigee::fault {
namespace {

constexpr double kDoubleEps = 0x1p-53;
constexpr double kFloatTiny = 0x1p-149;  // smallest fp32 subnormal: absolute rounding floor

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

Status GemmProblem::validate_sizes() const {
  PERIGEE_REQUIRE(N > 0 && C > 0 && OC > 0, StatusCode::kInvalidArgument, "abft ", gemm_kind_name(kind),
                  ": dimensions N=", N, " C=", C, " OC=", OC, " must be positive");
  return Status::ok();
}

Status GemmProblem::validate() const {
  PERIGEE_CHECK(validate_sizes());
  const bool need_inp = kind == GemmKind::kForward || kind == GemmKind::kBackwardWeight;
  const bool need_weight = kind == GemmKind::kForward || kind == GemmKind::kBackwardInput;
  const bool need_dout = kind != GemmKind::kForward;
  PERIGEE_REQUIRE(
      (!need_inp || inp != nullptr) && (!need_weight || weight != nullptr) && (!need_dout || dout != nullptr),
      StatusCode::kInvalidArgument, "abft ", gemm_kind_name(kind), ": an operand is null");
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
  weighted_encoded_ = false;
  unverifiable_reason_.clear();
  actual_ = {};
  PERIGEE_CHECK(kernels_->encode(p, before_, &enc_));

  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const double u = options_.unit_roundoff;
  const double terms = static_cast<double>(K + 2);  // K products, bias or prior value, final rounding
  const double gamma =
      terms * u < 0.5 ? terms * u / (1.0 - terms * u) : std::numeric_limits<double>::infinity();
  const double tau_scale = options_.threshold_scale * u * std::sqrt(terms);
  const double op = options_.operand_roundoff;
  // eta: rounding of the double checksums themselves (K + n terms) and fp32 underflow (absolute).
  auto fill = [&](const std::vector<double>& S, int64_t n, std::vector<double>* tau,
                  std::vector<double>* beta) {
    tau->resize(S.size());
    beta->resize(S.size());
    const double rel = 2.0 * kDoubleEps * static_cast<double>(K + n + 4);
    const double abs_floor = terms * static_cast<double>(n) * kFloatTiny;
    for (size_t l = 0; l < S.size(); ++l) {
      const double eta = rel * S[l] + abs_floor;
      (*tau)[l] = (tau_scale + op) * S[l] + eta;
      (*beta)[l] = (gamma + op) * S[l] + eta;
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
      (terms * u / (1.0 - terms * u) + options_.operand_roundoff + 2.0 * kDoubleEps * (terms + 2.0)) *
          ref.abs +
      terms * kFloatTiny;
  auto dist = [&](float v) {
    return std::isfinite(v) ? std::fabs(static_cast<double>(v) - ref.value)
                            : std::numeric_limits<double>::infinity();
  };
  const uint32_t bits = std::bit_cast<uint32_t>(old);
  const double d_old = dist(old);
  // A stored value within its own rounding bound is not provably wrong: it is left alone, even when a
  // flip of it lands closer to the exact value (a clean output keeps the backend's bits; the threshold
  // missed on rounding, which the caller's recompute shows).
  if (d_old <= tol) return Status::ok();
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
  if (best1 <= tol) {
    mask = mask1;  // a single bit flip of the stored value explains it: restore those exact bits
  } else {
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
  PERIGEE_CHECK(kernels_->measure(problem_, c, /*weighted=*/false, &actual_));
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
  int64_t i = v.rows_flagged == 1 ? v.rows[0] : -1;
  int64_t j = v.cols_flagged == 1 ? v.cols[0] : -1;
  const bool row_only = j < 0, col_only = i < 0;
  if (row_only || col_only) {
    if (!weighted_encoded_) {
      PERIGEE_CHECK(kernels_->encode_weighted(problem_, before_, &enc_));
      weighted_encoded_ = true;
    }
    PERIGEE_CHECK(kernels_->measure(problem_, c, /*weighted=*/true, &actual_));
    if (i < 0) i = locate_by_weight(false, j);
    if (j < 0) j = locate_by_weight(true, i);
  }
  const LineSums first = actual_;

  auto attempt = [&](int64_t ei, int64_t ej, bool* done) -> Status {
    *done = false;
    bool changed = false;
    Correction corr;
    PERIGEE_CHECK(try_element(c, ei, ej, &changed, &corr));
    if (!changed) return Status::ok();
    PERIGEE_CHECK(kernels_->measure(problem_, c, /*weighted=*/false, &actual_));
    const Verdict after = evaluate();
    if (after.rows_flagged == 0 && after.cols_flagged == 0) {
      *done = true;
      result->outcome = AbftOutcome::kCorrected;
      result->corrected = true;
      result->correction = corr;
      // Where and what, for the log: the element, its old and new value and the flipped bits.
      std::ostringstream what;
      what << "element (" << corr.row << ", " << corr.col << ") " << std::setprecision(9) << corr.old_value
           << " -> " << corr.new_value;
      if (corr.flip_mask != 0) {
        what << ", bit" << (std::popcount(corr.flip_mask) > 1 ? "s" : "");
        for (int b = 31; b >= 0; --b) {
          if (corr.flip_mask >> b & 1u) what << " " << b;
        }
        what << " flipped back";
      } else {
        what << " (the rounded exact value: no 1- or 2-bit flip explains it)";
      }
      result->detail = what.str();
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