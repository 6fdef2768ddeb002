// The generic (ActCast) form of each op with activation arguments, written once for every backend:
// `be` is a concrete backend whose fp32 implementations are named <op>_f32 with the fp32 form of the
// Backend signature. The CPU backend runs all its mixed-storage calls through these; the CUDA
// backend those without a native kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/act_cast.hpp"

namespace perigee::kernels {

template <class Impl>
Status cast_layernorm_forward(Impl& be, CastScratch& s, Act out, float* mean, float* rstd, const float* inp,
                              const float* weight, const float* bias, int N, int C) {
  float* o = nullptr;
  ActCast cast(be, s);
  cast.output(out, static_cast<size_t>(N) * C, &o);
  return cast.run([&] { return be.layernorm_forward_f32(o, mean, rstd, inp, weight, bias, N, C); });
}

template <class Impl>
Status cast_matmul_forward(Impl& be, CastScratch& s, Act out, ConstAct inp, const float* weight,
                           const float* bias, int N, int C, int OC) {
  float* o = nullptr;
  const float* i = nullptr;
  const float* b = bias;
  ActCast cast(be, s);
  cast.input(inp, static_cast<size_t>(N) * C, &i);
  cast.output(out, static_cast<size_t>(N) * OC, &o);
  if (!out.is_f32()) cast.rounded_input(bias, static_cast<size_t>(OC), &b);  // a bf16 output's bias
  return cast.run([&] { return be.matmul_forward_f32(o, i, weight, b, N, C, OC); });
}

template <class Impl>
Status cast_matmul_backward(Impl& be, CastScratch& s, Act dinp, float* dweight, float* dbias, ConstAct dout,
                            ConstAct inp, const float* weight, int N, int C, int OC) {
  float* di = nullptr;
  const float* d = nullptr;
  const float* i = nullptr;
  ActCast cast(be, s);
  cast.input(dout, static_cast<size_t>(N) * OC, &d);
  cast.input(dweight != nullptr ? inp : ConstAct(), static_cast<size_t>(N) * C, &i);
  cast.output(dinp, static_cast<size_t>(N) * C, &di);
  return cast.run([&] { return be.matmul_backward_f32(di, dweight, dbias, d, i, weight, N, C, OC); });
}

template <class Impl>
Status cast_attention_forward(Impl& be, CastScratch& s, Act out, float* att, ConstAct qkv, int B, int T,
                              int C, int NH) {
  const size_t n = static_cast<size_t>(B) * T * C;
  float* o = nullptr;
  const float* q = nullptr;
  ActCast cast(be, s);
  cast.input(qkv, 3 * n, &q);
  cast.output(out, n, &o);
  return cast.run([&] { return be.attention_forward_f32(o, att, q, B, T, C, NH); });
}

template <class Impl>
Status cast_attention_backward(Impl& be, CastScratch& s, Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out,
                               const float* att, int B, int T, int C, int NH) {
  const size_t n = static_cast<size_t>(B) * T * C;
  float* dq = nullptr;
  const float* d = nullptr;
  const float* q = nullptr;
  const float* o = nullptr;
  ActCast cast(be, s);
  cast.input(dout, n, &d);
  cast.input(qkv, 3 * n, &q);
  cast.input(out, n, &o);
  cast.output(dqkv, 3 * n, &dq);
  return cast.run([&] { return be.attention_backward_f32(dq, d, q, o, att, B, T, C, NH); });
}

template <class Impl>
Status cast_gelu_forward(Impl& be, CastScratch& s, Act out, ConstAct inp, size_t n) {
  float* o = nullptr;
  const float* i = nullptr;
  ActCast cast(be, s);
  cast.input(inp, n, &i);
  cast.output(out, n, &o);
  return cast.run([&] { return be.gelu_forward_f32(o, i, n); });
}

template <class Impl>
Status cast_gelu_backward(Impl& be, CastScratch& s, Act dinp, ConstAct inp, ConstAct dout, size_t n) {
  float* di = nullptr;
  const float* i = nullptr;
  const float* d = nullptr;
  ActCast cast(be, s);
  cast.input(inp, n, &i);
  cast.input(dout, n, &d);
  cast.output(dinp, n, &di);
  return cast.run([&] { return be.gelu_backward_f32(di, i, d, n); });
}

}  // namespace perigee::kernels
