// CpuBackend's Act ops: fp32 tensors go straight to the fp32 implementations; any bf16 tensor takes
// the ActCast path (kernels/act_ops.hpp), which widens, computes in fp32 and rounds once.
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
  return cast_crossentropy_forward_backward(*this, cast_scratch_, losses, dlogits, logits, targets, dloss, N,
                                            V, Vp);
}

}  // namespace perigee::kernels::cpu
