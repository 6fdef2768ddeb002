// bench_kernels' cases (bench_kernels_cases.hpp): shapes, buffers, bytes and FLOPs per kernel family.
#include "bench/gpu/bench_kernels_cases.hpp"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_backend_factory.hpp"

namespace perigee::bench {
namespace {

const int32_t* tok(float* p) {
  return reinterpret_cast<const int32_t*>(p);
}

}  // namespace

std::vector<Case> make_cases(kernels::cuda::CudaBackend* gpu) {
  std::vector<Case> cases;
  const auto fp = [](size_t n, float lo = -1.0f, float hi = 1.0f) { return BufSpec{n, lo, hi, 0}; };
  const auto zero = [](size_t n) { return BufSpec{n, 0.0f, 0.0f, 0}; };

  // ---- layernorm: bufs out, mean, rstd, inp, weight, bias | dinp, dweight, dbias, dout
  const auto ln_bufs = [=](Backend*, const Dims& d) {
    return std::vector<BufSpec>{zero(d.nc()),        zero(d.N()), zero(d.N()), fp(d.nc(), -2.0f, 2.0f),
                                fp(d.C, 0.5f, 1.5f), fp(d.C),     fp(d.nc()),  zero(d.C),
                                zero(d.C),           fp(d.nc())};
  };
  const OpFn ln_fwd = [](Backend* be, const Bufs& b, const Dims& d) {
    return be->layernorm_forward(b[0], b[1], b[2], b[3], b[4], b[5], d.N(), d.C);
  };
  cases.push_back({"layernorm_forward",
                   "GB/s",
                   ln_bufs,
                   nullptr,
                   ln_fwd,
                   [](const Dims& d) { return 4.0 * (2.0 * d.nc() + 2.0 * d.N() + 2.0 * d.C); },
                   {0, 1, 2},
                   1e-5,
                   1e-5});
  // The residual add in front (what the model runs): sum = inp + b[6] written to b[9], then the LayerNorm.
  cases.push_back({"residual_layernorm_forward",
                   "GB/s",
                   ln_bufs,
                   nullptr,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     return be->residual_layernorm_forward(b[9], b[0], b[1], b[2], b[3], b[6], b[4], b[5],
                                                           d.N(), d.C);
                   },
                   [](const Dims& d) { return 4.0 * (4.0 * d.nc() + 2.0 * d.N() + 2.0 * d.C); },
                   {0, 1, 2, 9},
                   1e-5,
                   1e-5});
  cases.push_back({"layernorm_backward",
                   "GB/s",
                   ln_bufs,
                   ln_fwd,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     return be->layernorm_backward(b[6], b[7], b[8], b[9], b[3], b[4], b[1], b[2], d.N(),
                                                   d.C);
                   },
                   [](const Dims& d) { return 4.0 * (4.0 * d.nc() + 2.0 * d.N() + 5.0 * d.C); },
                   {6, 7, 8},
                   1e-4,
                   1e-4});

  // ---- attention: bufs out, state, qkv | dqkv, dout
  const auto att_bufs = [=](Backend* be, const Dims& d) {
    return std::vector<BufSpec>{zero(d.nc()), zero(be->attention_state_size(d.B, d.T, d.C, d.NH)),
                                fp(3 * d.nc()), zero(3 * d.nc()), fp(d.nc())};
  };
  const OpFn att_fwd = [](Backend* be, const Bufs& b, const Dims& d) {
    return be->attention_forward(b[0], b[1], b[2], d.B, d.T, d.C, d.NH);
  };
  const auto att_flops = [](const Dims& d) {
    return 4.0 * d.B * d.NH * static_cast<double>(d.T) * d.T * (d.C / d.NH) / 2.0;
  };
  const OpFn att_bwd = [](Backend* be, const Bufs& b, const Dims& d) {
    return be->attention_backward(b[3], b[4], b[2], b[0], b[1], d.B, d.T, d.C, d.NH);
  };
  // The bf16 cases run the same ops with the backend in bf16 mode (tensor-core kernel); operands are
  // rounded to bf16 (8-bit mantissa), hence the tolerances.
  const auto in_bf16 = [=](OpFn op) -> OpFn {
    return [=](Backend* be, const Bufs& b, const Dims& d) {
      if (be == gpu) gpu->set_precision(GpuPrecision::kBf16);
      return op(be, b, d);
    };
  };
  cases.push_back({"attention_forward", "TFLOP/s", att_bufs, nullptr, att_fwd, att_flops, {0}, 1e-5, 1e-4});
  cases.push_back({"attention_backward",
                   "TFLOP/s",
                   att_bufs,
                   att_fwd,
                   att_bwd,
                   [=](const Dims& d) { return 2.5 * att_flops(d); },
                   {3},
                   2e-5,
                   2e-4});
  cases.push_back({"attention_forward bf16",
                   "TFLOP/s",
                   att_bufs,
                   nullptr,
                   in_bf16(att_fwd),
                   att_flops,
                   {0},
                   2e-2,
                   2e-2,
                   GpuPrecision::kBf16});
  cases.push_back({"attention_backward bf16",
                   "TFLOP/s",
                   att_bufs,
                   in_bf16(att_fwd),
                   in_bf16(att_bwd),
                   [=](const Dims& d) { return 2.5 * att_flops(d); },
                   {3},
                   5e-2,
                   5e-2,
                   GpuPrecision::kBf16});

  // bf16 storage, as the model runs with [device] activations = "bf16": qkv, out and dqkv bf16, dout
  // fp32. Bufs out, state, qkv, dqkv, dout as above (out and dqkv hold bf16), then the bf16 qkv and the
  // widened out and dqkv that the check compares. Each attention variant runs beside the default.
  const auto half = [=](size_t n) { return zero((n + 1) / 2); };  // n bf16 in 4-byte slots
  const auto act_bufs = [=](Backend* be, const Dims& d) {
    return std::vector<BufSpec>{half(d.nc()),   zero(be->attention_state_size(d.B, d.T, d.C, d.NH)),
                                fp(3 * d.nc()), half(3 * d.nc()),
                                fp(d.nc()),     half(3 * d.nc()),
                                zero(d.nc()),   zero(3 * d.nc())};
  };
  const auto u16 = [](float* p) { return reinterpret_cast<uint16_t*>(p); };
  const OpFn act_fwd = [=](Backend* be, const Bufs& b, const Dims& d) {
    return be->attention_forward(u16(b[0]), b[1], u16(b[5]), d.B, d.T, d.C, d.NH);
  };
  const OpFn act_prepare = [=](Backend* be, const Bufs& b, const Dims& d) {
    if (be == gpu) gpu->set_precision(GpuPrecision::kBf16);
    return be->to_bf16(u16(b[5]), b[2], 3 * d.nc());
  };
  const OpFn act_prepare_bwd = [=](Backend* be, const Bufs& b, const Dims& d) {
    PERIGEE_CHECK(act_prepare(be, b, d));
    return act_fwd(be, b, d);
  };
  const OpFn widen_out = [=](Backend* be, const Bufs& b, const Dims& d) {
    return be->from_bf16(b[6], u16(b[0]), 1.0f, d.nc());
  };
  const OpFn widen_dqkv = [=](Backend* be, const Bufs& b, const Dims& d) {
    return be->from_bf16(b[7], u16(b[3]), 1.0f, 3 * d.nc());
  };
  const std::vector<std::pair<std::string, kernels::cuda::KernelVariants>> variants = {
      {"", {}},
      {" in-place", {.attention_in_place_backward = true}},
      {" wide", {.attention_wide_forward = true}},
      // Last: a broken inter-block ordering traps, and the cases before it are measured by then.
      {" one-pass", {.attention_one_pass_backward = true}},
      {" in-place one-pass", {.attention_in_place_backward = true, .attention_one_pass_backward = true}},
  };
  for (const auto& [suffix, variant] : variants) {
    const auto with_variant = [=, v = variant](OpFn op) -> OpFn {
      return [=](Backend* be, const Bufs& b, const Dims& d) {
        if (be == gpu) gpu->set_kernel_variants(v);
        return op(be, b, d);
      };
    };
    if (!variant.attention_in_place_backward && !variant.attention_one_pass_backward) {
      // the default forward and the forward's variants
      cases.push_back({"attention_forward bf16 act" + suffix,
                       "TFLOP/s",
                       act_bufs,
                       act_prepare,
                       with_variant(act_fwd),
                       att_flops,
                       {6},
                       2e-2,
                       2e-2,
                       GpuPrecision::kBf16,
                       widen_out});
    }
    if (variant.attention_wide_forward) continue;  // the default backward and the backward's variants
    cases.push_back({"attention_backward bf16 act" + suffix,
                     "TFLOP/s",
                     act_bufs,
                     act_prepare_bwd,
                     with_variant([=](Backend* be, const Bufs& b, const Dims& d) {
                       return be->attention_backward(u16(b[3]), b[4], u16(b[5]), u16(b[0]), b[1], d.B, d.T,
                                                     d.C, d.NH);
                     }),
                     [=](const Dims& d) { return 2.5 * att_flops(d); },
                     {7},
                     5e-2,
                     5e-2,
                     GpuPrecision::kBf16,
                     widen_dqkv});
  }

  // ---- GELU and residual on the MLP activation [N, 4C]: bufs out, inp, dinp, dout
  const auto gelu_bufs = [=](Backend*, const Dims& d) {
    return std::vector<BufSpec>{zero(4 * d.nc()), fp(4 * d.nc(), -3.0f, 3.0f), zero(4 * d.nc()),
                                fp(4 * d.nc())};
  };
  cases.push_back(
      {"gelu_forward",
       "GB/s",
       gelu_bufs,
       nullptr,
       [](Backend* be, const Bufs& b, const Dims& d) { return be->gelu_forward(b[0], b[1], 4 * d.nc()); },
       [](const Dims& d) { return 4.0 * 2.0 * 4.0 * d.nc(); },
       {0},
       1e-7,
       5e-6});
  cases.push_back({"gelu_backward",
                   "GB/s",
                   gelu_bufs,
                   nullptr,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     return be->gelu_backward(b[2], b[1], b[3], 4 * d.nc());
                   },
                   [](const Dims& d) { return 4.0 * 4.0 * 4.0 * d.nc(); },
                   {2},
                   1e-6,
                   1e-5});
  cases.push_back({"residual_forward",
                   "GB/s",
                   [=](Backend*, const Dims& d) {
                     return std::vector<BufSpec>{zero(d.nc()), fp(d.nc()), fp(d.nc())};
                   },
                   nullptr,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     return be->residual_forward(b[0], b[1], b[2], d.nc());
                   },
                   [](const Dims& d) { return 4.0 * 3.0 * d.nc(); },
                   {0},
                   0.0,
                   0.0});

  // ---- cross-entropy over [N, Vp]: bufs losses, probs, logits, targets, dlogits
  const auto ce_bufs = [=](Backend*, const Dims& d) {
    const size_t nv = static_cast<size_t>(d.N()) * d.Vp;
    return std::vector<BufSpec>{zero(d.N()), zero(nv), fp(nv, -4.0f, 4.0f),
                                BufSpec{static_cast<size_t>(d.N()), 0, 0, d.V}, zero(nv)};
  };
  const OpFn ce_fwd = [](Backend* be, const Bufs& b, const Dims& d) {
    return be->crossentropy_forward(b[0], b[1], b[2], tok(b[3]), d.N(), d.V, d.Vp);
  };
  cases.push_back(
      {"crossentropy_forward",
       "GB/s",
       ce_bufs,
       nullptr,
       ce_fwd,
       [](const Dims& d) { return 4.0 * (2.0 * d.N() * static_cast<double>(d.Vp) + 2.0 * d.N()); },
       {0, 1},
       1e-6,
       2e-6});
  cases.push_back({"crossentropy_backward",
                   "GB/s",
                   ce_bufs,
                   ce_fwd,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     return be->crossentropy_backward(b[4], b[1], tok(b[3]), 1.0f / d.N(), d.N(), d.V, d.Vp);
                   },
                   [](const Dims& d) { return 4.0 * (2.0 * d.N() * static_cast<double>(d.Vp) + d.N()); },
                   {4},
                   1e-9,
                   4e-6});
  // What a training step runs: one pass, logits read once and dlogits written (losses too).
  cases.push_back(
      {"crossentropy_forward_backward",
       "GB/s",
       ce_bufs,
       nullptr,
       [](Backend* be, const Bufs& b, const Dims& d) {
         return be->crossentropy_forward_backward(b[0], b[4], b[2], tok(b[3]), 1.0f / d.N(), d.N(), d.V,
                                                  d.Vp);
       },
       [](const Dims& d) { return 4.0 * (2.0 * d.N() * static_cast<double>(d.Vp) + 2.0 * d.N()); },
       {0, 4},
       1e-6,
       4e-6});

  // The same with bf16 logits and the bf16 gradient written over them, as a step with [device] logits =
  // "bf16" runs it, with and without KernelVariants::crossentropy_staged. Bufs as above, then the bf16
  // logits and the gradient widened for the check; bytes: the logits read once, the gradient written.
  // Timed calls after the first read the gradient the one before wrote (the same work; both cases alike).
  const auto ce16_bufs = [=](Backend* be, const Dims& d) {
    std::vector<BufSpec> b = ce_bufs(be, d);
    const size_t nv = static_cast<size_t>(d.N()) * d.Vp;
    b.push_back(half(nv));
    b.push_back(zero(nv));
    return b;
  };
  for (const bool staged : {false, true}) {
    cases.push_back(
        {std::string("crossentropy_forward_backward bf16 in place") + (staged ? " staged" : ""),
         "GB/s",
         ce16_bufs,
         [=](Backend* be, const Bufs& b, const Dims& d) {
           return be->to_bf16(u16(b[5]), b[2], static_cast<size_t>(d.N()) * d.Vp);
         },
         [=](Backend* be, const Bufs& b, const Dims& d) {
           if (be == gpu) gpu->set_kernel_variants({.crossentropy_staged = staged});
           return be->crossentropy_forward_backward(b[0], u16(b[5]), u16(b[5]), tok(b[3]), 1.0f / d.N(),
                                                    d.N(), d.V, d.Vp);
         },
         [](const Dims& d) { return 2.0 * (2.0 * d.N() * static_cast<double>(d.Vp)) + 4.0 * 2.0 * d.N(); },
         {0, 6},
         1e-9,
         8e-3,
         GpuPrecision::kFp32,
         [=](Backend* be, const Bufs& b, const Dims& d) {
           return be->from_bf16(b[6], u16(b[5]), 1.0f, static_cast<size_t>(d.N()) * d.Vp);
         }});
  }

  // ---- AdamW over the whole parameter buffer: params, grads, m, v
  cases.push_back({"adamw_update",
                   "GB/s",
                   [=](Backend*, const Dims& d) {
                     return std::vector<BufSpec>{fp(d.params, -0.1f, 0.1f), fp(d.params, -0.01f, 0.01f),
                                                 fp(d.params, -1e-3f, 1e-3f), fp(d.params, 0.0f, 1e-5f)};
                   },
                   nullptr,
                   [](Backend* be, const Bufs& b, const Dims& d) {
                     kernels::AdamWParams hp;
                     hp.lr = 1e-4f;
                     hp.weight_decay = 0.1f;
                     hp.step = 10;
                     return be->adamw_update(b[0], b[1], b[2], b[3], d.params, hp);
                   },
                   [](const Dims& d) { return 28.0 * static_cast<double>(d.params); },
                   {0, 2, 3},
                   1e-7,
                   1e-5});

  // ---- bf16 gradient wire ([comm] grad_dtype = "bf16"): round the whole gradient to bf16 and widen it
  // back (what one all-reduce adds on each rank): grads, wire (n bf16 in n/2 4-byte slots), out.
  // CPU and GPU round alike, so the check is exact.
  cases.push_back(
      {"to_bf16 + from_bf16",
       "GB/s",
       [=](Backend*, const Dims& d) {
         return std::vector<BufSpec>{fp(d.params, -0.01f, 0.01f), zero((d.params + 1) / 2), zero(d.params)};
       },
       nullptr,
       [](Backend* be, const Bufs& b, const Dims& d) {
         auto* wire = reinterpret_cast<uint16_t*>(b[1]);
         PERIGEE_CHECK(be->to_bf16(wire, b[0], d.params));
         return be->from_bf16(b[2], wire, 0.5f, d.params);
       },
       [](const Dims& d) { return 12.0 * static_cast<double>(d.params); },
       {2},
       0.0,
       0.0});

  // ---- GEMMs of the model through matmul_forward / matmul_backward: out, inp, weight, bias, dinp, dweight,
  // dbias, dout
  struct Gemm {
    const char* name;
    int oc_mult;  // OC = oc_mult * C (0: Vp)
    int c_mult;   // C_in = c_mult * C
  };
  for (GpuPrecision precision : {GpuPrecision::kFp32, GpuPrecision::kTf32, GpuPrecision::kBf16}) {
    for (const Gemm g : {Gemm{"qkv", 3, 1}, Gemm{"fc", 4, 1}, Gemm{"fc_proj", 1, 4}, Gemm{"lm_head", 0, 1}}) {
      const auto oc = [=](const Dims& d) { return g.oc_mult > 0 ? g.oc_mult * d.C : d.Vp; };
      const auto ic = [=](const Dims& d) { return g.c_mult * d.C; };
      const auto bufs = [=](Backend*, const Dims& d) {
        const size_t n = d.N(), k = ic(d), o = oc(d);
        return std::vector<BufSpec>{
            zero(n * o), fp(n * k), fp(o * k, -0.1f, 0.1f), fp(o, -0.1f, 0.1f), zero(n * k),
            zero(o * k), zero(o),   fp(n * o, -0.1f, 0.1f)};
      };
      const auto set_mode = [=](Backend* be) {
        if (be == gpu) gpu->set_precision(precision);
      };
      const std::string suffix =
          std::string(" ") + g.name + " " + kernels::cuda::gpu_precision_name(precision);
      // Tolerances: fp32 as the unit tests (atol grows with K); TF32 has a 10-bit mantissa, bf16 an 8-bit
      // one (operands rounded: relative error about 2^-9 per product, sums of up to 4C terms).
      const double atol = precision == GpuPrecision::kBf16   ? 1e-1
                          : precision == GpuPrecision::kTf32 ? 3e-2
                                                             : 1e-4;
      const double rtol = precision == GpuPrecision::kFp32 ? 1e-5 : 2e-2;
      cases.push_back({"matmul_forward" + suffix,
                       "TFLOP/s",
                       bufs,
                       nullptr,
                       [=](Backend* be, const Bufs& b, const Dims& d) {
                         set_mode(be);
                         return be->matmul_forward(b[0], b[1], b[2], g.oc_mult > 0 ? b[3] : nullptr, d.N(),
                                                   ic(d), oc(d));
                       },
                       [=](const Dims& d) { return 2.0 * d.N() * static_cast<double>(ic(d)) * oc(d); },
                       {0},
                       atol,
                       rtol,
                       precision});
      cases.push_back({"matmul_backward" + suffix,
                       "TFLOP/s",
                       bufs,
                       nullptr,
                       [=](Backend* be, const Bufs& b, const Dims& d) {
                         set_mode(be);
                         return be->matmul_backward(b[4], b[5], g.oc_mult > 0 ? b[6] : nullptr, b[7], b[1],
                                                    b[2], d.N(), ic(d), oc(d));
                       },
                       [=](const Dims& d) { return 4.0 * d.N() * static_cast<double>(ic(d)) * oc(d); },
                       {4, 5, 6},
                       atol,
                       rtol,
                       precision});
    }
  }
  return cases;
}

}  // namespace perigee::bench
