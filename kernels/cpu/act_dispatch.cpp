// CpuBackend's Act ops: fp32 tensors go straight to the fp32 implementations; any bf16 tensor takes
// the ActCast path (kernels/act_ops.hpp), which widens, computes in fp32 and rounds once (the
// cross-entropy a row at a time instead). The working memory below counts those temporaries per call.
#include <algorithm>

#include "kernels/act_ops.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/op_checks.hpp"

namespace perigee::kernels::cpu {

Status CpuBackend::layernorm_forward(Act out, float* mean, float* rstd, const float* inp, const float* weight,
                                     const float* bias, int N, int C) {
  if (out.is_f32()) return layernorm_forward_f32(out.f32(), mean, rstd, inp, weight, bias, N, C);
  return cast_layernorm_forward(*this, cast_scratch_, out, mean, rstd, inp, weight, bias, N, C);
}

Status CpuBackend::matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                                  int OC) {
  PERIGEE_CHECK(check_matmul_forward_operands("matmul_forward", out, nullptr, inp, weight, bias, N, C, OC));
  if (all_f32({out, inp})) return matmul_forward_f32(out.f32(), inp.f32(), weight, bias, N, C, OC);
  return cast_matmul_forward(*this, cast_scratch_, out, inp, weight, bias, N, C, OC);
}

Status CpuBackend::matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                   const float* weight, int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_backward_operands("matmul_backward", dinp, dweight, dbias, dout, inp, weight,
                                               nullptr, N, C, OC));
  if (all_f32({dinp, dout, inp})) {
    return matmul_backward_f32(dinp.f32(), dweight, dbias, dout.f32(), inp.f32(), weight, N, C, OC);
  }
  return cast_matmul_backward(*this, cast_scratch_, dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

Status CpuBackend::attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) {
  if (all_f32({out, qkv})) return attention_forward_f32(out.f32(), att, qkv.f32(), B, T, C, NH);
  return cast_attention_forward(*this, cast_scratch_, out, att, qkv, B, T, C, NH);
}

Status CpuBackend::attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att,
                                      int B, int T, int C, int NH) {
  // The CPU backward reads the saved probabilities, not `out`: a bf16 `out` need not be widened.
  if (all_f32({dqkv, dout, qkv})) {
    return attention_backward_f32(dqkv.f32(), dout.f32(), qkv.f32(), out.f32(), att, B, T, C, NH);
  }
  return cast_attention_backward(*this, cast_scratch_, dqkv, dout, qkv, ConstAct(), att, B, T, C, NH);
}

Status CpuBackend::gelu_forward(Act out, ConstAct inp, size_t n) {
  if (all_f32({out, inp})) return gelu_forward_f32(out.f32(), inp.f32(), n);
  return cast_gelu_forward(*this, cast_scratch_, out, inp, n);
}

Status CpuBackend::gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) {
  if (all_f32({dinp, inp, dout})) return gelu_backward_f32(dinp.f32(), inp.f32(), dout.f32(), n);
  return cast_gelu_backward(*this, cast_scratch_, dinp, inp, dout, n);
}

Status CpuBackend::crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits,
                                                 const int32_t* targets, float dloss, int N, int V, int Vp) {
  PERIGEE_CHECK(check_alias_storage("crossentropy_forward_backward", dlogits, logits,
                                    static_cast<size_t>(N) * static_cast<size_t>(Vp)));
  if (all_f32({dlogits, logits})) {
    return crossentropy_forward_backward_f32(losses, dlogits.f32(), logits.f32(), targets, dloss, N, V, Vp);
  }
  return crossentropy_forward_backward_rows(losses, dlogits, logits, targets, dloss, N, V, Vp);
}

namespace {

// ActCast temporaries of one call, as the dispatch above runs it.
size_t cast_bytes(const OpCall& c) {
  using Op = OpCall::Op;
  constexpr DType kF32 = DType::kF32;
  auto temp = [](DType t, size_t count) { return ActCast::temp_floats(t, count); };
  const size_t N = static_cast<size_t>(c.N), C = static_cast<size_t>(c.C), OC = static_cast<size_t>(c.OC);
  const size_t n = N * C;
  size_t floats = 0;
  switch (c.op) {
    case Op::kMatmulForward:
      if (c.inp != kF32 || c.out != kF32)
        floats = temp(c.inp, n) + temp(c.out, N * OC) +
                 (c.out != kF32 && c.bias ? ActCast::temp_floats(kF32, OC, true) : 0);
      break;
    case Op::kMatmulBackward:
      if (c.out != kF32 || c.dout != kF32 || c.inp != kF32)
        floats = temp(c.dout, N * OC) + (c.dweight ? temp(c.inp, n) : 0) + (c.dinp ? temp(c.out, n) : 0);
      break;
    case Op::kAttentionForward:
      if (c.inp != kF32 || c.out != kF32) floats = temp(c.inp, 3 * n) + temp(c.out, n);
      break;
    case Op::kAttentionBackward:  // the saved probabilities stand in for the forward's out
      if (c.out != kF32 || c.dout != kF32 || c.inp != kF32)
        floats = temp(c.dout, n) + temp(c.inp, 3 * n) + temp(c.out, 3 * n);
      break;
    case Op::kGeluForward:
      if (c.inp != kF32 || c.out != kF32) floats = temp(c.inp, c.n) + temp(c.out, c.n);
      break;
    case Op::kGeluBackward:
      if (c.out != kF32 || c.inp != kF32 || c.dout != kF32)
        floats = temp(c.inp, c.n) + temp(c.dout, c.n) + temp(c.out, c.n);
      break;
    case Op::kEncoderBackward:
    case Op::kLayerNormBackward:
    case Op::kSumSquares:
      break;
  }
  return floats * sizeof(float);
}

}  // namespace

Status CpuBackend::working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const {
  size_t most = 0;
  for (const OpCall& c : calls) most = std::max(most, cast_bytes(c));
  *bytes = most;
  return Status::ok();
}

Status CpuBackend::reserve_working_memory(std::span<const OpCall> calls) {
  uint64_t bytes = 0;
  PERIGEE_CHECK(working_memory_bytes(calls, &bytes));
  if (bytes == 0) return Status::ok();
  void* unused = nullptr;
  return cast_scratch_.reserve(*this, static_cast<size_t>(bytes), &unused);
}

}  // namespace perigee::kernels::cpu
