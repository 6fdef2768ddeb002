// The storage rule of the Act ops (kernels/act.hpp), checked on any backend: an op called with some of
// its activation tensors stored as bf16 must give, bit for bit, what its all-fp32 form gives on the
// widened bf16 inputs, with each bf16 output rounded once (core/bf16.hpp) from that fp32 result; the
// fp32 side outputs (statistics, attention state, dweight, dbias) must be unchanged bit for bit. A GEMM
// with a bf16 output adds its bias rounded to bf16: the reference gets that bias rounded too.
// Every combination of fp32/bf16 over an op's activation tensors is run, so both a backend's native
// bf16 kernels and its ActCast fallback are held to the rule. Shared by the CPU and CUDA tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::testing {

struct TensorSpec {
  std::string name;
  size_t n = 0;
  bool output = false;                    // written (or accumulated) by the op
  bool act = false;                       // an Act/ConstAct argument: runs as fp32 and as bf16
  float scale = 1.0f;                     // inputs and accumulated outputs start uniform in [-scale, scale]
  bool rounded_with_bf16_output = false;  // an fp32 input read rounded to bf16 when an output is bf16
};

// The op on backend memory: ptrs[i] and types[i] describe tensor i of OpSpec::tensors.
using ActOpFn =
    std::function<Status(Backend&, const std::vector<void*>& ptrs, const std::vector<DType>& types)>;
// Optional: replaces the random start values (e.g. a forward's outputs as a backward's inputs).
using ActInitFn = std::function<void(Backend&, std::vector<std::vector<float>>* host)>;

struct ActOpSpec {
  std::string name;
  std::vector<TensorSpec> tensors;
  ActOpFn run;
  ActInitFn init;
  // bf16 outputs may differ from the rule by this many bf16 steps (units in the last place): 0 but
  // where a backend's native kernel for a bf16 output is allowed another fp32 summation order.
  uint32_t bf16_output_ulps = 0;
};

inline Act act_of(const std::vector<void*>& p, const std::vector<DType>& t, size_t i) {
  return Act(p[i], t[i]);
}
inline const float* f32_of(const std::vector<void*>& p, size_t i) {
  return static_cast<const float*>(p[i]);
}
inline float* mut_f32_of(const std::vector<void*>& p, size_t i) {
  return static_cast<float*>(p[i]);
}

namespace detail {

// Bits of a tensor as stored: fp32 words, or bf16 halves widened into the low 16 bits.
inline std::vector<uint32_t> stored_bits(Backend& be, const void* p, size_t n, DType t) {
  std::vector<uint32_t> bits(n);
  if (t == DType::kF32) {
    PERIGEE_CHECK_OR_DIE(be.copy_to_host(bits.data(), p, n * sizeof(float)));
  } else {
    std::vector<uint16_t> h(n);
    PERIGEE_CHECK_OR_DIE(be.copy_to_host(h.data(), p, n * sizeof(uint16_t)));
    for (size_t i = 0; i < n; ++i) bits[i] = h[i];
  }
  return bits;
}

inline uint32_t f32_bits(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// Runs the op once with the given storage types; returns every output's stored bits.
inline std::vector<std::vector<uint32_t>> run_once(Backend& be, const ActOpSpec& op,
                                                   const std::vector<std::vector<float>>& host,
                                                   const std::vector<DType>& types) {
  std::vector<void*> ptrs(op.tensors.size(), nullptr);
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    const size_t n = op.tensors[i].n;
    PERIGEE_CHECK_OR_DIE(be.allocate(&ptrs[i], n * dtype_size(types[i])));
    if (types[i] == DType::kF32) {
      PERIGEE_CHECK_OR_DIE(be.copy_to_device(ptrs[i], host[i].data(), n * sizeof(float)));
    } else {
      std::vector<uint16_t> h(n);
      for (size_t j = 0; j < n; ++j) h[j] = float_to_bf16(host[i][j]);
      PERIGEE_CHECK_OR_DIE(be.copy_to_device(ptrs[i], h.data(), n * sizeof(uint16_t)));
    }
  }
  const Status s = op.run(be, ptrs, types);
  EXPECT_TRUE(s.is_ok()) << op.name << ": " << s.message();
  std::vector<std::vector<uint32_t>> outs;
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    if (op.tensors[i].output) outs.push_back(stored_bits(be, ptrs[i], op.tensors[i].n, types[i]));
  }
  for (void* p : ptrs) be.release(p);
  return outs;
}

}  // namespace detail

// Checks the rule for every fp32/bf16 combination of the op's activation tensors.
inline void expect_act_rule(Backend& be, const ActOpSpec& op, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<float>> host(op.tensors.size());
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    std::uniform_real_distribution<float> u(-op.tensors[i].scale, op.tensors[i].scale);
    host[i].resize(op.tensors[i].n);
    for (float& x : host[i]) x = u(rng);
  }
  if (op.init) op.init(be, &host);
  std::vector<size_t> acts;
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    if (op.tensors[i].act) acts.push_back(i);
  }
  for (uint32_t mask = 1; mask < (1u << acts.size()); ++mask) {
    std::vector<DType> types(op.tensors.size(), DType::kF32);
    std::string combo;
    for (size_t j = 0; j < acts.size(); ++j) {
      if ((mask >> j & 1u) == 0) continue;
      types[acts[j]] = DType::kBF16;
      combo += (combo.empty() ? "" : ",") + op.tensors[acts[j]].name;
    }
    // Reference: all fp32, the bf16 inputs replaced by their widened values (and a bf16 output's bias
    // by its rounding).
    bool bf16_output = false;
    for (size_t i = 0; i < op.tensors.size(); ++i)
      bf16_output |= types[i] == DType::kBF16 && op.tensors[i].output;
    std::vector<std::vector<float>> ref_host = host;
    for (size_t i = 0; i < op.tensors.size(); ++i) {
      const bool rounded = op.tensors[i].rounded_with_bf16_output && bf16_output;
      if ((types[i] == DType::kBF16 && !op.tensors[i].output) || rounded) {
        for (float& x : ref_host[i]) x = bf16_to_float(float_to_bf16(x));
      }
    }
    const auto ref = detail::run_once(be, op, ref_host, std::vector<DType>(op.tensors.size(), DType::kF32));
    const auto got = detail::run_once(be, op, host, types);
    ASSERT_EQ(ref.size(), got.size());
    size_t k = 0;
    for (size_t i = 0; i < op.tensors.size(); ++i) {
      if (!op.tensors[i].output) continue;
      const bool narrow = types[i] == DType::kBF16;
      size_t bad = 0, first = 0;
      for (size_t e = 0; e < op.tensors[i].n; ++e) {
        float r = 0.0f;
        const uint32_t rb = ref[k][e];
        std::memcpy(&r, &rb, sizeof(r));
        const uint32_t want = narrow ? float_to_bf16(r) : rb;
        // Same-sign bf16 bit patterns are ordered like their values: the distance counts bf16 steps.
        const bool near = narrow && ((got[k][e] ^ want) & 0x8000u) == 0 &&
                          (got[k][e] > want ? got[k][e] - want : want - got[k][e]) <= op.bf16_output_ulps;
        if (got[k][e] != want && !near && bad++ == 0) first = e;
      }
      EXPECT_EQ(bad, 0u) << be.name() << " " << op.name << " with bf16 {" << combo << "}: " << bad << " of "
                         << op.tensors[i].n << " elements of " << op.tensors[i].name
                         << " differ from the rule, first at " << first;
      ++k;
    }
  }
}

// The Act ops on small shapes (attention heads of 16: the CUDA bf16 attention's smallest tile).
inline std::vector<ActOpSpec> act_op_specs(Backend& be) {
  constexpr int N = 6, C = 32, OC = 24, B = 2, T = 7, NH = 2;
  const size_t nc = static_cast<size_t>(B) * T * C;
  const size_t n_att = be.attention_state_size(B, T, C, NH);
  std::vector<ActOpSpec> ops;
  ops.push_back({"layernorm_forward",
                 {{"out", N * C, true, true},
                  {"mean", N, true},
                  {"rstd", N, true},
                  {"inp", N * C, false, false, 2.0f},
                  {"weight", C},
                  {"bias", C}},
                 [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.layernorm_forward(act_of(p, t, 0), mut_f32_of(p, 1), mut_f32_of(p, 2),
                                              f32_of(p, 3), f32_of(p, 4), f32_of(p, 5), N, C);
                 },
                 nullptr});
  ops.push_back({"matmul_forward",
                 {{"out", N * OC, true, true},
                  {"inp", N * C, false, true},
                  {"weight", OC * C},
                  {"bias", OC, false, false, 1.0f, /*rounded_with_bf16_output=*/true}},
                 [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.matmul_forward(act_of(p, t, 0), act_of(p, t, 1), f32_of(p, 2), f32_of(p, 3), N, C,
                                           OC);
                 },
                 nullptr});
  ops.push_back({"matmul_backward",
                 {{"dinp", N * C, true, true},
                  {"dweight", OC * C, true},
                  {"dbias", OC, true},
                  {"dout", N * OC, false, true},
                  {"inp", N * C, false, true},
                  {"weight", OC * C}},
                 [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.matmul_backward(act_of(p, t, 0), mut_f32_of(p, 1), mut_f32_of(p, 2),
                                            act_of(p, t, 3), act_of(p, t, 4), f32_of(p, 5), N, C, OC);
                 },
                 nullptr});
  ops.push_back({"attention_forward",
                 {{"out", nc, true, true}, {"att", n_att, true}, {"qkv", 3 * nc, false, true}},
                 [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.attention_forward(act_of(p, t, 0), mut_f32_of(p, 1), act_of(p, t, 2), B, T, C,
                                              NH);
                 },
                 nullptr});
  // The backward's `out` and `att` are the forward's, computed on this backend in fp32.
  ops.push_back({"attention_backward",
                 {{"dqkv", 3 * nc, true, true},
                  {"dout", nc, false, true},
                  {"qkv", 3 * nc, false, true},
                  {"out", nc, false, true},
                  {"att", n_att}},
                 [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.attention_backward(act_of(p, t, 0), act_of(p, t, 1), act_of(p, t, 2),
                                               act_of(p, t, 3), f32_of(p, 4), B, T, C, NH);
                 },
                 [=](Backend& k, std::vector<std::vector<float>>* host) {
                   void *qkv = nullptr, *out = nullptr, *att = nullptr;
                   PERIGEE_CHECK_OR_DIE(k.allocate(&qkv, 3 * nc * sizeof(float)));
                   PERIGEE_CHECK_OR_DIE(k.allocate(&out, nc * sizeof(float)));
                   PERIGEE_CHECK_OR_DIE(k.allocate(&att, n_att * sizeof(float)));
                   PERIGEE_CHECK_OR_DIE(k.copy_to_device(qkv, (*host)[2].data(), 3 * nc * sizeof(float)));
                   PERIGEE_CHECK_OR_DIE(k.attention_forward(static_cast<float*>(out),
                                                            static_cast<float*>(att),
                                                            static_cast<const float*>(qkv), B, T, C, NH));
                   PERIGEE_CHECK_OR_DIE(k.copy_to_host((*host)[3].data(), out, nc * sizeof(float)));
                   PERIGEE_CHECK_OR_DIE(k.copy_to_host((*host)[4].data(), att, n_att * sizeof(float)));
                   for (void* q : {qkv, out, att}) k.release(q);
                 }});
  ops.push_back({"gelu_forward",
                 {{"out", 300, true, true}, {"inp", 300, false, true, 4.0f}},
                 [](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.gelu_forward(act_of(p, t, 0), act_of(p, t, 1), 300);
                 },
                 nullptr});
  ops.push_back({"gelu_backward",
                 {{"dinp", 300, true, true}, {"inp", 300, false, true, 4.0f}, {"dout", 300, false, true}},
                 [](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
                   return k.gelu_backward(act_of(p, t, 0), act_of(p, t, 1), act_of(p, t, 2), 300);
                 },
                 nullptr});
  // Vp 36 pads 6 columns (their gradient is 0 in either storage).
  constexpr int V = 30, Vp = 36;
  ops.push_back(
      {"crossentropy_forward_backward",
       {{"losses", N, true}, {"dlogits", N * Vp, true, true}, {"logits", N * Vp, false, true, 3.0f}},
       [=](Backend& k, const std::vector<void*>& p, const std::vector<DType>& t) {
         const std::vector<int32_t> host_targets = {3, 0, 29, 17, 12, 8};
         void* targets = nullptr;
         PERIGEE_CHECK(k.allocate(&targets, N * sizeof(int32_t)));
         Status s = k.copy_to_device(targets, host_targets.data(), N * sizeof(int32_t));
         if (s.is_ok()) {
           s = k.crossentropy_forward_backward(mut_f32_of(p, 0), act_of(p, t, 1), act_of(p, t, 2),
                                               static_cast<const int32_t*>(targets), 1.0f / N, N, V, Vp);
         }
         k.release(targets);
         return s;
       },
       nullptr});
  return ops;
}

}  // namespace perigee::kernels::testing
