// ProfilingBackend: forwarding, per-op accounting and the report (see profiling_backend.hpp).
#include "kernels/profiling_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

namespace perigee::kernels {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- SyncClockTimer

Status SyncClockTimer::begin(int slot) {
  PERIGEE_REQUIRE(open_slot_ < 0, StatusCode::kInternal, "SyncClockTimer: begin(", slot,
                  ") inside an open op");
  PERIGEE_CHECK(backend_->synchronize());
  open_slot_ = slot;
  start_ns_ = now_ns();
  return Status::ok();
}

Status SyncClockTimer::end(int slot) {
  PERIGEE_REQUIRE(open_slot_ == slot, StatusCode::kInternal, "SyncClockTimer: end(", slot, ") without begin");
  const Status synced = backend_->synchronize();
  const int64_t stop = now_ns();
  open_slot_ = -1;
  PERIGEE_CHECK(synced);
  pending_.emplace_back(slot, static_cast<double>(stop - start_ns_) * 1e-6);
  return Status::ok();
}

Status SyncClockTimer::resolve(const Sink& sink) {
  for (const auto& [slot, ms] : pending_) sink(slot, ms);
  pending_.clear();
  return Status::ok();
}

// ---- ProfilingBackend: bookkeeping

ProfilingBackend::ProfilingBackend(Backend* inner, std::unique_ptr<OpTimer> timer, ProfilingOptions options)
    : inner_(inner),
      timer_(timer ? std::move(timer) : std::make_unique<SyncClockTimer>(inner)),
      options_(options),
      name_(std::string("profile:") + (inner != nullptr ? inner->name() : "none")) {}

int ProfilingBackend::slot(const char* op, std::initializer_list<std::pair<const char*, int64_t>> dims) {
  if (!enabled_) return -1;
  std::string key(op);
  if (options_.by_shape) {
    for (const auto& [dim, value] : dims) {
      key += ' ';
      key += dim;
      key += '=';
      key += std::to_string(value);
    }
  }
  auto [it, inserted] = index_.try_emplace(key, static_cast<int>(entries_.size()));
  if (inserted) entries_.push_back(Entry{key, 0, 0.0});
  ++entries_[it->second].calls;
  return it->second;
}

template <class Op>
Status ProfilingBackend::timed(int slot, Op&& op) {
  if (slot < 0) return op();
  PERIGEE_CHECK(timer_->begin(slot));
  const Status result = op();
  const Status stopped = timer_->end(slot);
  PERIGEE_CHECK(result);
  PERIGEE_CHECK(stopped);
  return Status::ok();
}

Status ProfilingBackend::collect() {
  PERIGEE_CHECK(inner_->synchronize());
  PERIGEE_CHECK(timer_->resolve([this](int slot, double ms) {
    if (slot >= 0 && static_cast<size_t>(slot) < entries_.size()) entries_[slot].total_ms += ms;
  }));
  return Status::ok();
}

std::vector<OpStat> ProfilingBackend::stats() const {
  std::vector<OpStat> out;
  for (const Entry& e : entries_) {
    if (e.calls > 0) out.push_back(OpStat{e.op, e.calls, e.total_ms});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const OpStat& a, const OpStat& b) { return a.total_ms > b.total_ms; });
  return out;
}

double ProfilingBackend::total_ms() const {
  double t = 0.0;
  for (const Entry& e : entries_) t += e.total_ms;
  return t;
}

uint64_t ProfilingBackend::total_calls() const {
  uint64_t n = 0;
  for (const Entry& e : entries_) n += e.calls;
  return n;
}

void ProfilingBackend::reset() {
  // Fold (and so discard) what is pending, then zero; a failing resolve leaves nothing to keep.
  (void)timer_->resolve([](int, double) {});
  for (Entry& e : entries_) {
    e.calls = 0;
    e.total_ms = 0.0;
  }
}

std::string ProfilingBackend::report(double reference_ms, int steps) const {
  const double total = total_ms();
  const double denom = reference_ms > 0.0 ? reference_ms : total;
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-44s %9s %11s %10s %9s %7s\n", "op", "calls", "total ms", "ms/call",
                steps > 0 ? "ms/step" : "", reference_ms > 0.0 ? "% step" : "% ops");
  out += line;
  for (const OpStat& s : stats()) {
    char per_step[32] = "";
    if (steps > 0) std::snprintf(per_step, sizeof per_step, "%9.3f", s.total_ms / steps);
    std::snprintf(line, sizeof line, "%-44s %9llu %11.3f %10.4f %9s %6.1f%%\n", s.op.c_str(),
                  static_cast<unsigned long long>(s.calls), s.total_ms,
                  s.total_ms / static_cast<double>(s.calls), per_step,
                  denom > 0.0 ? 100.0 * s.total_ms / denom : 0.0);
    out += line;
  }
  char per_step[32] = "";
  if (steps > 0) std::snprintf(per_step, sizeof per_step, "%9.3f", total / steps);
  std::snprintf(line, sizeof line, "%-44s %9llu %11.3f %10s %9s %6.1f%%\n", "(all ops)",
                static_cast<unsigned long long>(total_calls()), total, "", per_step,
                denom > 0.0 ? 100.0 * total / denom : 0.0);
  out += line;
  if (reference_ms > 0.0) {
    if (steps > 0) std::snprintf(per_step, sizeof per_step, "%9.3f", (reference_ms - total) / steps);
    std::snprintf(line, sizeof line, "%-44s %9s %11.3f %10s %9s %6.1f%%\n", "(outside ops: host, gaps)", "",
                  reference_ms - total, "", per_step, 100.0 * (reference_ms - total) / reference_ms);
    out += line;
  }
  return out;
}

// ---- memory

Status ProfilingBackend::allocate(void** ptr, size_t bytes) {
  return timed(slot("allocate"), [&] { return inner_->allocate(ptr, bytes); });
}

void ProfilingBackend::release(void* ptr) {
  const int s = slot("release");
  (void)timed(s, [&] {
    inner_->release(ptr);
    return Status::ok();
  });
}

Status ProfilingBackend::memset_zero(void* ptr, size_t bytes) {
  return timed(slot("memset_zero"), [&] { return inner_->memset_zero(ptr, bytes); });
}

Status ProfilingBackend::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  return timed(slot("copy_to_device"), [&] { return inner_->copy_to_device(dst, host_src, bytes); });
}

Status ProfilingBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  return timed(slot("copy_to_host"), [&] { return inner_->copy_to_host(host_dst, src, bytes); });
}

// ---- ops

Status ProfilingBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte,
                                         const float* wpe, int B, int T, int C, int V) {
  return timed(slot("encoder_forward", {{"B", B}, {"T", T}, {"C", C}}),
               [&] { return inner_->encoder_forward(out, tokens, wte, wpe, B, T, C, V); });
}

Status ProfilingBackend::encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                                          int B, int T, int C, int V) {
  return timed(slot("encoder_backward", {{"B", B}, {"T", T}, {"C", C}}),
               [&] { return inner_->encoder_backward(dwte, dwpe, dout, tokens, B, T, C, V); });
}

Status ProfilingBackend::layernorm_forward(Act out, float* mean, float* rstd, const float* inp,
                                           const float* weight, const float* bias, int N, int C) {
  return timed(slot("layernorm_forward", {{"N", N}, {"C", C}}),
               [&] { return inner_->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C); });
}

Status ProfilingBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                            const float* inp, const float* weight, const float* mean,
                                            const float* rstd, int N, int C) {
  return timed(slot("layernorm_backward", {{"N", N}, {"C", C}}), [&] {
    return inner_->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  });
}

Status ProfilingBackend::matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N,
                                        int C, int OC) {
  return timed(slot("matmul_forward", {{"N", N}, {"C", C}, {"OC", OC}}),
               [&] { return inner_->matmul_forward(out, inp, weight, bias, N, C, OC); });
}

Status ProfilingBackend::matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                         const float* weight, int N, int C, int OC) {
  return timed(slot("matmul_backward", {{"N", N}, {"C", C}, {"OC", OC}}),
               [&] { return inner_->matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC); });
}

Status ProfilingBackend::attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) {
  return timed(slot("attention_forward", {{"B", B}, {"T", T}, {"C", C}, {"NH", NH}}),
               [&] { return inner_->attention_forward(out, att, qkv, B, T, C, NH); });
}

Status ProfilingBackend::attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out,
                                            const float* att, int B, int T, int C, int NH) {
  return timed(slot("attention_backward", {{"B", B}, {"T", T}, {"C", C}, {"NH", NH}}),
               [&] { return inner_->attention_backward(dqkv, dout, qkv, out, att, B, T, C, NH); });
}

Status ProfilingBackend::gelu_forward(Act out, ConstAct inp, size_t n) {
  return timed(slot("gelu_forward", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->gelu_forward(out, inp, n); });
}

Status ProfilingBackend::gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) {
  return timed(slot("gelu_backward", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->gelu_backward(dinp, inp, dout, n); });
}

Status ProfilingBackend::matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight,
                                             const float* bias, int N, int C, int OC) {
  if (!inner_->fuses_gelu()) return Backend::matmul_gelu_forward(pre, out, inp, weight, bias, N, C, OC);
  return timed(slot("matmul_gelu_forward", {{"N", N}, {"C", C}, {"OC", OC}}),
               [&] { return inner_->matmul_gelu_forward(pre, out, inp, weight, bias, N, C, OC); });
}

Status ProfilingBackend::matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout,
                                              ConstAct inp, const float* weight, ConstAct pre, int N, int C,
                                              int OC) {
  if (!inner_->fuses_gelu()) {
    return Backend::matmul_backward_gelu(dpre, dweight, dbias, dout, inp, weight, pre, N, C, OC);
  }
  return timed(slot("matmul_backward_gelu", {{"N", N}, {"C", C}, {"OC", OC}}), [&] {
    return inner_->matmul_backward_gelu(dpre, dweight, dbias, dout, inp, weight, pre, N, C, OC);
  });
}

Status ProfilingBackend::residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd,
                                                    const float* a, const float* b, const float* weight,
                                                    const float* bias, int N, int C) {
  if (!inner_->fuses_residual_layernorm()) {
    return Backend::residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C);
  }
  return timed(slot("residual_layernorm_forward", {{"N", N}, {"C", C}}), [&] {
    return inner_->residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C);
  });
}

Status ProfilingBackend::residual_forward(float* out, const float* a, const float* b, size_t n) {
  return timed(slot("residual_forward", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->residual_forward(out, a, b, n); });
}

Status ProfilingBackend::crossentropy_forward(float* losses, float* probs, const float* logits,
                                              const int32_t* targets, int N, int V, int Vp) {
  return timed(slot("crossentropy_forward", {{"N", N}, {"V", V}, {"Vp", Vp}}),
               [&] { return inner_->crossentropy_forward(losses, probs, logits, targets, N, V, Vp); });
}

Status ProfilingBackend::crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                               float dloss, int N, int V, int Vp) {
  return timed(slot("crossentropy_backward", {{"N", N}, {"V", V}, {"Vp", Vp}}),
               [&] { return inner_->crossentropy_backward(dlogits, probs, targets, dloss, N, V, Vp); });
}

Status ProfilingBackend::crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits,
                                                       const int32_t* targets, float dloss, int N, int V,
                                                       int Vp) {
  return timed(slot("crossentropy_forward_backward", {{"N", N}, {"V", V}, {"Vp", Vp}}), [&] {
    return inner_->crossentropy_forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp);
  });
}

Status ProfilingBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                                      const AdamWParams& hp) {
  return timed(slot("adamw_update", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->adamw_update(params, grads, m, v, n, hp); });
}

// Timed as one adamw_update over every run's elements (the per-kernel tables compare it with the
// per-run calls it replaces).
Status ProfilingBackend::adamw_update_runs(float* params, const float* grads, float* m, float* v,
                                           std::span<const AdamWRun> runs, const AdamWParams& hp) {
  size_t n = 0;
  for (const AdamWRun& r : runs) n += r.count;
  return timed(
      slot("adamw_update", {{"n", static_cast<int64_t>(n)}, {"runs", static_cast<int64_t>(runs.size())}}),
      [&] { return inner_->adamw_update_runs(params, grads, m, v, runs, hp); });
}

Status ProfilingBackend::sum_squares(const float* x, size_t n, double* out) {
  return timed(slot("sum_squares", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->sum_squares(x, n, out); });
}

Status ProfilingBackend::scale(float* x, float s, size_t n) {
  return timed(slot("scale", {{"n", static_cast<int64_t>(n)}}), [&] { return inner_->scale(x, s, n); });
}

Status ProfilingBackend::to_bf16(uint16_t* out, const float* in, size_t n) {
  return timed(slot("to_bf16", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->to_bf16(out, in, n); });
}

Status ProfilingBackend::from_bf16(float* out, const uint16_t* in, float s, size_t n) {
  return timed(slot("from_bf16", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->from_bf16(out, in, s, n); });
}

Status ProfilingBackend::refresh_weight_cache(const float* params, size_t n) {
  return timed(slot("refresh_weight_cache", {{"n", static_cast<int64_t>(n)}}),
               [&] { return inner_->refresh_weight_cache(params, n); });
}

void ProfilingBackend::release_weight_cache(const float* params) {
  (void)timed(slot("release_weight_cache"), [&] {
    inner_->release_weight_cache(params);
    return Status::ok();
  });
}

}  // namespace perigee::kernels
