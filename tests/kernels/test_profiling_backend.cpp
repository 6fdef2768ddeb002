// ProfilingBackend: a small forward + backward + AdamW sequence through the decorator gives results
// bit-identical to the inner backend alone, exact call counts per op, positive times, per-shape keys,
// resolution on synchronize, error pass-through and the report. CPU with the sync + steady_clock timer;
// on a CUDA device also the cudaEvent timer (skipped without one). No timing values are asserted.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "kernels/cuda/event_timer.cuh"
#include "kernels/profiling_backend.hpp"

namespace perigee::kernels {
namespace {

constexpr int kB = 2, kT = 16, kC = 32, kNH = 4, kV = 50, kVp = 64, kN = kB * kT;

// Buffers allocated on a backend, filled and read through its copies (works on any device).
class Arena {
 public:
  explicit Arena(Backend* be) : be_(be) {}
  ~Arena() {
    for (void* p : ptrs_) be_->release(p);
  }
  template <typename T>
  T* make(const std::vector<T>& init) {
    void* p = nullptr;
    PERIGEE_CHECK_OR_DIE(be_->allocate(&p, init.size() * sizeof(T)));
    PERIGEE_CHECK_OR_DIE(be_->copy_to_device(p, init.data(), init.size() * sizeof(T)));
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }
  float* zeros(size_t n) { return make(std::vector<float>(n, 0.0f)); }
  std::vector<float> read(const float* p, size_t n) {
    std::vector<float> h(n);
    PERIGEE_CHECK_OR_DIE(be_->copy_to_host(h.data(), p, n * sizeof(float)));
    return h;
  }
  size_t count() const { return ptrs_.size(); }

 private:
  Backend* be_;
  std::vector<void*> ptrs_;
};

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

struct MiniStep {
  std::vector<std::vector<float>> outputs;  // every buffer an op wrote, read back at the end
  double sum_squares = 0.0;
  size_t allocations = 0;  // = copy_to_device calls = release calls
  size_t reads = 0;        // copy_to_host calls
};

// One layer's worth of ops (encoder, LN, QKV GEMM, attention, GELU, residual, LM head GEMM,
// cross-entropy and every backward), then sum_squares, scale, AdamW, memset_zero.
MiniStep run_mini_step(Backend* be) {
  MiniStep r;
  Arena a(be);
  std::vector<int32_t> tok(kN), tgt(kN);
  for (int i = 0; i < kN; ++i) {
    tok[i] = (i * 7 + 3) % kV;
    tgt[i] = (i * 11 + 5) % kV;
  }
  int32_t* tokens = a.make(tok);
  int32_t* targets = a.make(tgt);
  float* wte = a.make(random_floats(size_t{kVp} * kC, 1, 0.1f));
  float* wpe = a.make(random_floats(size_t{kT} * kC, 2, 0.1f));
  float* lnw = a.make(random_floats(kC, 3, 1.0f));
  float* lnb = a.make(random_floats(kC, 4, 0.1f));
  float* wqkv = a.make(random_floats(size_t{3} * kC * kC, 5, 0.2f));
  float* bqkv = a.make(random_floats(3 * kC, 6, 0.1f));
  const size_t nc = size_t{kN} * kC;
  float* x = a.zeros(nc);
  float* mean = a.zeros(kN);
  float* rstd = a.zeros(kN);
  float* ln = a.zeros(nc);
  float* qkv = a.zeros(3 * nc);
  float* att_state = a.zeros(be->attention_state_size(kB, kT, kC, kNH));
  float* att = a.zeros(nc);
  float* g = a.zeros(nc);
  float* res = a.zeros(nc);
  float* logits = a.zeros(size_t{kN} * kVp);
  float* losses = a.zeros(kN);
  float* fused = a.zeros(size_t{kN} * kVp);
  float* fused_losses = a.zeros(kN);
  float* dres = a.zeros(nc);
  float* datt = a.zeros(nc);
  float* dqkv = a.zeros(3 * nc);
  float* dln = a.zeros(nc);
  float* dx = a.zeros(nc);
  float* dwte = a.zeros(size_t{kVp} * kC);
  float* dwpe = a.zeros(size_t{kT} * kC);
  float* dlnw = a.zeros(kC);
  float* dlnb = a.zeros(kC);
  float* dwqkv = a.zeros(size_t{3} * kC * kC);
  float* dbqkv = a.zeros(3 * kC);
  float* m = a.zeros(size_t{kVp} * kC);
  float* v = a.zeros(size_t{kVp} * kC);

  PERIGEE_CHECK_OR_DIE(be->encoder_forward(x, tokens, wte, wpe, kB, kT, kC, kV));
  PERIGEE_CHECK_OR_DIE(be->layernorm_forward(ln, mean, rstd, x, lnw, lnb, kN, kC));
  PERIGEE_CHECK_OR_DIE(be->matmul_forward(qkv, ln, wqkv, bqkv, kN, kC, 3 * kC));
  PERIGEE_CHECK_OR_DIE(be->attention_forward(att, att_state, qkv, kB, kT, kC, kNH));
  PERIGEE_CHECK_OR_DIE(be->gelu_forward(g, att, nc));
  PERIGEE_CHECK_OR_DIE(be->residual_forward(res, x, g, nc));
  PERIGEE_CHECK_OR_DIE(be->matmul_forward(logits, res, wte, nullptr, kN, kC, kVp));
  PERIGEE_CHECK_OR_DIE(
      be->crossentropy_forward_backward(fused_losses, fused, logits, targets, 1.0f / kN, kN, kV, kVp));
  PERIGEE_CHECK_OR_DIE(be->crossentropy_forward(losses, logits, logits, targets, kN, kV, kVp));
  PERIGEE_CHECK_OR_DIE(be->crossentropy_backward(logits, logits, targets, 1.0f / kN, kN, kV, kVp));
  PERIGEE_CHECK_OR_DIE(be->matmul_backward(dres, dwte, nullptr, logits, res, wte, kN, kC, kVp));
  PERIGEE_CHECK_OR_DIE(be->gelu_backward(datt, att, dres, nc));
  PERIGEE_CHECK_OR_DIE(be->attention_backward(dqkv, datt, qkv, att, att_state, kB, kT, kC, kNH));
  PERIGEE_CHECK_OR_DIE(be->matmul_backward(dln, dwqkv, dbqkv, dqkv, ln, wqkv, kN, kC, 3 * kC));
  PERIGEE_CHECK_OR_DIE(be->layernorm_backward(dx, dlnw, dlnb, dln, x, lnw, mean, rstd, kN, kC));
  PERIGEE_CHECK_OR_DIE(be->residual_forward(dx, dx, dres, nc));
  PERIGEE_CHECK_OR_DIE(be->encoder_backward(dwte, dwpe, dx, tokens, kB, kT, kC, kV));
  PERIGEE_CHECK_OR_DIE(be->sum_squares(dwte, size_t{kVp} * kC, &r.sum_squares));
  PERIGEE_CHECK_OR_DIE(be->scale(dwte, 0.5f, size_t{kVp} * kC));
  AdamWParams hp;
  hp.weight_decay = 0.1f;
  PERIGEE_CHECK_OR_DIE(be->adamw_update(wte, dwte, m, v, size_t{kVp} * kC, hp));
  PERIGEE_CHECK_OR_DIE(be->memset_zero(dln, nc * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be->synchronize());

  const std::vector<std::pair<const float*, size_t>> outs = {{x, nc},
                                                             {mean, kN},
                                                             {rstd, kN},
                                                             {ln, nc},
                                                             {qkv, 3 * nc},
                                                             {att, nc},
                                                             {g, nc},
                                                             {res, nc},
                                                             {logits, size_t{kN} * kVp},
                                                             {losses, kN},
                                                             {dres, nc},
                                                             {datt, nc},
                                                             {dqkv, 3 * nc},
                                                             {dln, nc},
                                                             {dx, nc},
                                                             {dwte, size_t{kVp} * kC},
                                                             {dwpe, size_t{kT} * kC},
                                                             {dlnw, kC},
                                                             {dlnb, kC},
                                                             {dwqkv, size_t{3} * kC * kC},
                                                             {dbqkv, 3 * kC},
                                                             {wte, size_t{kVp} * kC},
                                                             {m, size_t{kVp} * kC},
                                                             {v, size_t{kVp} * kC},
                                                             {fused, size_t{kN} * kVp},
                                                             {fused_losses, kN}};
  for (const auto& [p, n] : outs) r.outputs.push_back(a.read(p, n));
  r.allocations = a.count();
  r.reads = outs.size();
  return r;
}

const std::map<std::string, uint64_t>& expected_op_calls() {
  static const std::map<std::string, uint64_t> calls = {
      {"encoder_forward", 1},      {"layernorm_forward", 1},     {"matmul_forward", 2},
      {"attention_forward", 1},    {"gelu_forward", 1},          {"residual_forward", 2},
      {"crossentropy_forward", 1}, {"crossentropy_backward", 1}, {"matmul_backward", 2},
      {"gelu_backward", 1},        {"attention_backward", 1},    {"layernorm_backward", 1},
      {"encoder_backward", 1},     {"sum_squares", 1},           {"scale", 1},
      {"adamw_update", 1},         {"memset_zero", 1},           {"crossentropy_forward_backward", 1}};
  return calls;
}

void expect_bit_identical(const MiniStep& got, const MiniStep& ref) {
  ASSERT_EQ(got.outputs.size(), ref.outputs.size());
  for (size_t i = 0; i < ref.outputs.size(); ++i) {
    ASSERT_EQ(got.outputs[i].size(), ref.outputs[i].size());
    EXPECT_EQ(
        std::memcmp(got.outputs[i].data(), ref.outputs[i].data(), ref.outputs[i].size() * sizeof(float)), 0)
        << "output buffer " << i << " differs";
  }
  EXPECT_EQ(std::memcmp(&got.sum_squares, &ref.sum_squares, sizeof(double)), 0);
}

// Checks counts (exact) and times (positive) of a profiled mini step.
void expect_profile(const ProfilingBackend& prof, const MiniStep& step) {
  std::map<std::string, OpStat> by_op;
  for (const OpStat& s : prof.stats()) by_op[s.op] = s;
  std::map<std::string, uint64_t> expected = expected_op_calls();
  expected["allocate"] = step.allocations;
  expected["copy_to_device"] = step.allocations;
  expected["copy_to_host"] = step.reads;
  expected["release"] = step.allocations;
  EXPECT_EQ(by_op.size(), expected.size());
  uint64_t total_calls = 0;
  for (const auto& [op, calls] : expected) {
    ASSERT_TRUE(by_op.count(op)) << op << " missing";
    EXPECT_EQ(by_op[op].calls, calls) << op;
    EXPECT_GT(by_op[op].total_ms, 0.0) << op;
    total_calls += calls;
  }
  EXPECT_EQ(prof.total_calls(), total_calls);
  EXPECT_GT(prof.total_ms(), 0.0);
}

TEST(ProfilingBackend, CpuForwardsBitIdenticalAndCountsExactly) {
  cpu::CpuBackend plain(2), inner(2);
  const MiniStep ref = run_mini_step(&plain);
  ProfilingBackend prof(&inner);
  EXPECT_EQ(prof.kind(), DeviceKind::kCpu);
  EXPECT_STREQ(prof.name(), "profile:cpu");
  const MiniStep got = run_mini_step(&prof);
  ASSERT_TRUE(prof.collect().is_ok());
  expect_bit_identical(got, ref);
  expect_profile(prof, got);

  const std::string table = prof.report(2.0 * prof.total_ms(), 1);
  EXPECT_NE(table.find("matmul_forward"), std::string::npos);
  EXPECT_NE(table.find("(all ops)"), std::string::npos);
  EXPECT_NE(table.find("50.0%"), std::string::npos) << table;  // all ops are half the reference

  // A second step doubles every count; reset() zeroes them.
  (void)run_mini_step(&prof);
  ASSERT_TRUE(prof.collect().is_ok());
  for (const OpStat& s : prof.stats()) {
    if (expected_op_calls().count(s.op)) {
      EXPECT_EQ(s.calls, 2 * expected_op_calls().at(s.op)) << s.op;
    }
  }
  prof.reset();
  EXPECT_EQ(prof.total_calls(), 0u);
  EXPECT_EQ(prof.total_ms(), 0.0);
  EXPECT_TRUE(prof.stats().empty());
}

TEST(ProfilingBackend, ByShapeKeysSplitTheGemms) {
  cpu::CpuBackend inner(2);
  ProfilingBackend prof(&inner, nullptr, ProfilingOptions{/*by_shape=*/true});
  (void)run_mini_step(&prof);
  ASSERT_TRUE(prof.collect().is_ok());
  std::map<std::string, uint64_t> calls;
  for (const OpStat& s : prof.stats()) calls[s.op] = s.calls;
  const std::string qkv =
      "matmul_forward N=" + std::to_string(kN) + " C=" + std::to_string(kC) + " OC=" + std::to_string(3 * kC);
  const std::string head =
      "matmul_forward N=" + std::to_string(kN) + " C=" + std::to_string(kC) + " OC=" + std::to_string(kVp);
  EXPECT_EQ(calls[qkv], 1u);
  EXPECT_EQ(calls[head], 1u);
  EXPECT_EQ(calls.count("matmul_forward"), 0u);
  EXPECT_EQ(calls["allocate"], calls["release"]);
}

// A timer that reports a fixed time per op: shows that times arrive on synchronize, not before.
class FixedTimer final : public OpTimer {
 public:
  const char* name() const override { return "fixed"; }
  Status begin(int) override {
    ++begins;
    return Status::ok();
  }
  Status end(int slot) override {
    pending.push_back(slot);
    return Status::ok();
  }
  Status resolve(const Sink& sink) override {
    for (int s : pending) sink(s, 1.5);
    pending.clear();
    return Status::ok();
  }
  int begins = 0;
  std::vector<int> pending;
};

TEST(ProfilingBackend, TimesResolveOnSynchronize) {
  cpu::CpuBackend inner(2);
  auto timer = std::make_unique<FixedTimer>();
  FixedTimer* t = timer.get();
  ProfilingBackend prof(&inner, std::move(timer));
  void* p = nullptr;
  ASSERT_TRUE(prof.allocate(&p, 1024 * sizeof(float)).is_ok());
  float* x = static_cast<float*>(p);
  ASSERT_TRUE(prof.scale(x, 2.0f, 1024).is_ok());
  ASSERT_TRUE(prof.scale(x, 2.0f, 1024).is_ok());
  EXPECT_EQ(prof.total_calls(), 3u);
  EXPECT_EQ(prof.total_ms(), 0.0);  // nothing resolved yet
  ASSERT_TRUE(prof.synchronize().is_ok());
  EXPECT_EQ(prof.total_ms(), 4.5);
  EXPECT_EQ(t->begins, 3);

  // An op that fails passes its error through, and the timer pair is closed (the next op works).
  const Status bad = prof.matmul_forward(x, x, x, nullptr, -1, 4, 4);
  EXPECT_FALSE(bad.is_ok());
  EXPECT_TRUE(t->pending.size() == 1u);
  ASSERT_TRUE(prof.scale(x, 0.5f, 1024).is_ok());
  prof.release(p);
  ASSERT_TRUE(prof.collect().is_ok());
  EXPECT_EQ(prof.total_ms(), 4.5 + 3 * 1.5);

  // Disabled: forwarded, neither counted nor timed.
  const uint64_t calls = prof.total_calls();
  prof.set_enabled(false);
  ASSERT_TRUE(prof.allocate(&p, 64).is_ok());
  prof.release(p);
  ASSERT_TRUE(prof.collect().is_ok());
  EXPECT_EQ(prof.total_calls(), calls);
  EXPECT_EQ(t->begins, 6);
}

// ---- CUDA: the cudaEvent timer (skipped without a device)

TEST(ProfilingBackend, CudaEventTimerForwardsBitIdenticalAndCounts) {
  std::vector<cuda::DeviceInfo> devices;
  const Status probe = cuda::probe_devices(&devices);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<Backend> plain, inner;
  ASSERT_TRUE(cuda::make_cuda_backend(0, &plain).is_ok());
  ASSERT_TRUE(cuda::make_cuda_backend(0, &inner).is_ok());
  const MiniStep ref = run_mini_step(plain.get());
  std::unique_ptr<OpTimer> timer;
  ASSERT_TRUE(cuda::make_cuda_event_timer(inner.get(), &timer).is_ok());
  ProfilingBackend prof(inner.get(), std::move(timer));
  const MiniStep got = run_mini_step(&prof);
  ASSERT_TRUE(prof.collect().is_ok());
  expect_bit_identical(got, ref);
  expect_profile(prof, got);
}

TEST(ProfilingBackend, CudaEventTimerRejectsNonCudaBackend) {
  cpu::CpuBackend cpu(1);
  std::unique_ptr<OpTimer> timer;
  EXPECT_EQ(cuda::make_cuda_event_timer(&cpu, &timer).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::kernels
