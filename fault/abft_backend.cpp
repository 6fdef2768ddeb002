// AbftBackend: the checked matmul ops (see abft_backend.hpp for the protocol).
#include "fault/abft_backend.hpp"
#include "fault/host_checksum_kernels.hpp"

#include <algorithm>
#include <initializer_list>
#include <utility>
#include <vector>

namespace perigee::fault {

AbftBackend::AbftBackend(kernels::Backend* inner, const AbftOptions& options,
                         std::unique_ptr<ChecksumKernels> checksum_kernels)
    : inner_(inner),
      options_(options),
      kernels_(checksum_kernels ? std::move(checksum_kernels)
                                : std::make_unique<HostChecksumKernels>(options.threads)),
      host_kernels_(dynamic_cast<HostChecksumKernels*>(kernels_.get()) != nullptr),
      name_(std::string("abft:") + (inner != nullptr ? inner->name() : "none")),
      forward_(kernels_.get(), options_),
      backward_input_(kernels_.get(), options_),
      backward_weight_(kernels_.get(), options_),
      backward_bias_(kernels_.get(), options_) {}

AbftBackend::~AbftBackend() {
  if (scratch_ != nullptr && inner_ != nullptr) inner_->release(scratch_);
}

Status AbftBackend::require_kernels() const {
  PERIGEE_REQUIRE(inner_ != nullptr, StatusCode::kInvalidArgument, "AbftBackend: no inner backend");
  PERIGEE_REQUIRE(!host_kernels_ || inner_->kind() == kernels::DeviceKind::kCpu, StatusCode::kUnavailable,
                  "AbftBackend over '", inner_->name(),
                  "': host checksum kernels cannot read device memory; pass a device ChecksumKernels");
  return Status::ok();
}

Status AbftBackend::reserve_scratch(size_t floats) {
  if (floats <= scratch_floats_) return Status::ok();
  if (scratch_ != nullptr) inner_->release(scratch_);
  scratch_ = nullptr;
  scratch_floats_ = 0;
  void* p = nullptr;
  PERIGEE_CHECK(inner_->allocate(&p, floats * sizeof(float)));
  scratch_ = static_cast<float*>(p);
  scratch_floats_ = floats;
  return Status::ok();
}

namespace {

size_t snapshot_floats(std::span<const kernels::OpCall> calls) {
  size_t most = 0;
  for (const kernels::OpCall& c : calls) {
    if (c.op != kernels::OpCall::Op::kMatmulBackward || !c.accumulate) continue;
    const size_t dweight = c.dweight ? static_cast<size_t>(c.OC) * static_cast<size_t>(c.C) : 0;
    most = std::max(most, dweight + (c.bias ? static_cast<size_t>(c.OC) : 0));
  }
  return most;
}

// The GEMMs the checksum kernels check for `calls` (sizes and kinds; no operands).
std::vector<GemmProblem> gemm_problems(std::span<const kernels::OpCall> calls) {
  std::vector<GemmProblem> out;
  for (const kernels::OpCall& c : calls) {
    if (c.op == kernels::OpCall::Op::kMatmulForward) {
      out.push_back(GemmProblem::forward(nullptr, nullptr, nullptr, c.N, c.C, c.OC));
    } else if (c.op == kernels::OpCall::Op::kMatmulBackward) {
      if (c.dinp) out.push_back(GemmProblem::backward_input(nullptr, nullptr, c.N, c.C, c.OC));
      if (c.dweight) out.push_back(GemmProblem::backward_weight(nullptr, nullptr, c.N, c.C, c.OC));
      if (c.bias) out.push_back(GemmProblem::backward_bias(nullptr, c.N, c.OC));
    }
  }
  return out;
}

}  // namespace

Status AbftBackend::working_memory_bytes(std::span<const kernels::OpCall> calls, uint64_t* bytes) const {
  PERIGEE_CHECK(inner_->working_memory_bytes(calls, bytes));
  uint64_t checksums = 0;
  PERIGEE_CHECK(kernels_->working_bytes(gemm_problems(calls), &checksums));
  *bytes += snapshot_floats(calls) * sizeof(float) + checksums;  // far below 2^64: int dimensions
  return Status::ok();
}

Status AbftBackend::reserve_working_memory(std::span<const kernels::OpCall> calls) {
  PERIGEE_CHECK(inner_->reserve_working_memory(calls));
  PERIGEE_CHECK(reserve_scratch(snapshot_floats(calls)));
  return kernels_->reserve_working(gemm_problems(calls));
}

uint64_t AbftBackend::held_working_bytes() const {
  return scratch_floats_ * sizeof(float) + kernels_->held_bytes();
}

void AbftBackend::emit(const AbftGemm& gemm, const AbftCheck& check, AbftOutcome outcome) {
  if (!on_event_) return;
  const GemmProblem& p = gemm.problem();
  AbftEvent e;
  e.kind = p.kind;
  e.outcome = outcome;
  e.gemm_index = stats_.gemms_checked;
  e.N = p.N;
  e.C = p.C;
  e.OC = p.OC;
  e.rows_flagged = check.rows_flagged;
  e.cols_flagged = check.cols_flagged;
  e.max_ratio = check.max_ratio;
  e.corrected = check.corrected;
  e.correction = check.correction;
  e.detail = check.detail;
  on_event_(e);
}

Status AbftBackend::finish_output(AbftGemm* gemm, float* out, const float* snapshot, bool zero_before,
                                  const std::function<Status()>& recompute) {
  const GemmProblem& p = gemm->problem();
  const size_t n = p.size();
  if (fault_hook_) fault_hook_(out, n, p.kind);
  AbftCheck first;
  PERIGEE_CHECK(gemm->check(out, &first, /*allow_correction=*/true));
  ++stats_.gemms_checked;
  switch (first.outcome) {
    case AbftOutcome::kClean:
      stats_.max_clean_ratio = std::max(stats_.max_clean_ratio, first.max_ratio);
      return Status::ok();
    case AbftOutcome::kUnverifiable:
      ++stats_.unverifiable;
      emit(*gemm, first, AbftOutcome::kUnverifiable);
      return Status::ok();
    case AbftOutcome::kCorrected:
      ++stats_.faults_detected;
      ++stats_.corrected;
      emit(*gemm, first, AbftOutcome::kCorrected);
      return Status::ok();
    default:
      break;
  }
  ++stats_.faults_detected;
  if (snapshot != nullptr) PERIGEE_CHECK(kernels_->copy(out, snapshot, n));
  if (zero_before) PERIGEE_CHECK(inner_->memset_zero(out, n * sizeof(float)));
  PERIGEE_CHECK(recompute());
  if (fault_hook_) fault_hook_(out, n, p.kind);
  AbftCheck second;
  PERIGEE_CHECK(gemm->check(out, &second, /*allow_correction=*/false));
  first.detail = str_cat(first.detail, "; after recompute: ", abft_outcome_name(second.outcome),
                         second.detail.empty() ? "" : " (", second.detail, second.detail.empty() ? "" : ")");
  if (second.outcome == AbftOutcome::kClean) {
    ++stats_.recomputed;
    emit(*gemm, first, AbftOutcome::kRecomputed);
    return Status::ok();
  }
  if (second.within_bound) {
    ++stats_.tolerated;
    emit(*gemm, first, AbftOutcome::kTolerated);
    return Status::ok();
  }
  ++stats_.escalated;
  emit(*gemm, first, AbftOutcome::kEscalated);
  return make_error(StatusCode::kInternal, "ABFT escalation: ", gemm_kind_name(p.kind), " GEMM output [",
                    p.rows(), " x ", p.cols(), "] (N=", p.N, " C=", p.C, " OC=", p.OC,
                    ") still fails its checksums after a recompute: ", second.rows_flagged, " rows and ",
                    second.cols_flagged, " columns over threshold, worst residual ", second.max_ratio,
                    "x threshold; first check: ", first.detail);
}

namespace {

Status require_f32(const char* op, std::initializer_list<kernels::ConstAct> tensors) {
  PERIGEE_REQUIRE(kernels::all_f32(tensors), StatusCode::kInvalidArgument, "AbftBackend::", op,
                  ": ABFT checksums need fp32 activations, got bf16 ones; run with [device] activations = "
                  "\"fp32\" or without [fault] abft");
  return Status::ok();
}

}  // namespace

Status AbftBackend::matmul_forward(kernels::Act out_act, kernels::ConstAct inp_act, const float* weight,
                                   const float* bias, int N, int C, int OC) {
  PERIGEE_CHECK(require_kernels());
  PERIGEE_CHECK(require_f32("matmul_forward", {out_act, inp_act}));
  float* out = out_act.f32();
  const float* inp = inp_act.f32();
  PERIGEE_REQUIRE(out != nullptr && inp != nullptr && weight != nullptr, StatusCode::kInvalidArgument,
                  "matmul_forward: null out, inp or weight");
  const GemmProblem p = GemmProblem::forward(inp, weight, bias, N, C, OC);
  PERIGEE_CHECK(p.validate());
  PERIGEE_CHECK(forward_.encode(p, nullptr));
  auto run = [&] { return inner_->matmul_forward(out, inp, weight, bias, N, C, OC); };
  PERIGEE_CHECK(run());
  PERIGEE_CHECK(finish_output(&forward_, out, nullptr, false, run));
  return Status::ok();
}

Status AbftBackend::matmul_backward(kernels::Act dinp_act, float* dweight, float* dbias,
                                    kernels::ConstAct dout_act, kernels::ConstAct inp_act,
                                    const float* weight, int N, int C, int OC) {
  PERIGEE_CHECK(require_kernels());
  PERIGEE_CHECK(require_f32("matmul_backward", {dinp_act, dout_act, inp_act}));
  float* dinp = dinp_act.f32();
  const float* dout = dout_act.f32();
  const float* inp = inp_act.f32();
  // The inner backend's own argument rules, checked first because the checksums read these operands.
  PERIGEE_REQUIRE(dout != nullptr, StatusCode::kInvalidArgument, "matmul_backward: null dout");
  PERIGEE_REQUIRE(dinp == nullptr || weight != nullptr, StatusCode::kInvalidArgument,
                  "matmul_backward (dinp needs weight): null weight");
  PERIGEE_REQUIRE(dweight == nullptr || inp != nullptr, StatusCode::kInvalidArgument,
                  "matmul_backward (dweight needs inp): null inp");

  struct Output {
    AbftGemm* gemm;
    float* out;
    GemmProblem problem;
    bool zero_before;
    float* snapshot;
  };
  std::vector<Output> outputs;
  if (dinp != nullptr) {
    outputs.push_back(
        {&backward_input_, dinp, GemmProblem::backward_input(dout, weight, N, C, OC), false, nullptr});
  }
  if (dweight != nullptr) {
    outputs.push_back(
        {&backward_weight_, dweight, GemmProblem::backward_weight(dout, inp, N, C, OC), false, nullptr});
  }
  if (dbias != nullptr) {
    outputs.push_back({&backward_bias_, dbias, GemmProblem::backward_bias(dout, N, OC), false, nullptr});
  }
  if (outputs.empty()) return inner_->matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  // A written output (dinp, see GemmProblem::accumulates) needs no snapshot, and neither does an
  // accumulated one that is still all zero (the usual case: gradients zeroed before the backward
  // pass): a recompute starts again from zero. The other accumulated outputs are copied to scratch.
  size_t total = 0;
  for (auto& o : outputs) {
    PERIGEE_CHECK(o.problem.validate());
    if (o.problem.accumulates()) PERIGEE_CHECK(kernels_->all_zero(o.out, o.problem.size(), &o.zero_before));
    if (o.problem.accumulates() && !o.zero_before) total += o.problem.size();
  }
  if (total > 0) PERIGEE_CHECK(reserve_scratch(total));
  size_t offset = 0;
  for (auto& o : outputs) {
    if (o.problem.accumulates() && !o.zero_before) {
      o.snapshot = scratch_ + offset;
      offset += o.problem.size();
      PERIGEE_CHECK(kernels_->copy(o.snapshot, o.out, o.problem.size()));
    }
    PERIGEE_CHECK(o.gemm->encode(o.problem, o.snapshot));
  }
  PERIGEE_CHECK(inner_->matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC));
  for (const auto& o : outputs) {
    // Recompute only this output: the others are already verified (or verified next).
    auto run = [&] {
      const GemmKind k = o.problem.kind;
      return inner_->matmul_backward(
          k == GemmKind::kBackwardInput ? dinp : nullptr, k == GemmKind::kBackwardWeight ? dweight : nullptr,
          k == GemmKind::kBackwardBias ? dbias : nullptr, dout, inp, weight, N, C, OC);
    };
    PERIGEE_CHECK(finish_output(o.gemm, o.out, o.snapshot, o.zero_before, run));
  }
  return Status::ok();
}

}  // namespace perigee::fault
