// CudaBackend's Act ops: fp32 storage goes to the fp32 implementations (cuda_backend.cu); the bf16
// storage GptModel uses ([device] activations = "bf16": LayerNorm, attention and GELU outputs, the qkv
// and FC GEMMs' outputs, the attention and GELU input gradients, the FC projection's input gradient and the
// logits' gradient as bf16) runs native kernels that read and write bf16 directly: GELU in every
// combination, GEMMs (bf16 precision) with bf16 operands and fp32 or bf16 outputs, optionally with
// GELU in their epilogues; every other combination takes the ActCast path (widen, fp32 op, round).
#include "kernels/act_ops.hpp"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/gelu.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/matmul_bf16.cuh"
#include "kernels/op_checks.hpp"

namespace perigee::kernels::cuda {

Status CudaBackend::layernorm_forward(Act out, float* mean, float* rstd, const float* inp,
                                      const float* weight, const float* bias, int N, int C) {
  if (out.is_f32()) return layernorm_forward_f32(out.f32(), mean, rstd, inp, weight, bias, N, C);
  PERIGEE_CHECK(cuda::layernorm_forward(out.bf16(), mean, rstd, inp, weight, bias, N, C, stream_));
  return Status::ok();
}

Status CudaBackend::residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd,
                                               const float* a, const float* b, const float* weight,
                                               const float* bias, int N, int C) {
  if (out.is_f32()) {
    PERIGEE_CHECK(
        cuda::residual_layernorm_forward(residual, out.f32(), mean, rstd, a, b, weight, bias, N, C, stream_));
  } else {
    PERIGEE_CHECK(cuda::residual_layernorm_forward(residual, out.bf16(), mean, rstd, a, b, weight, bias, N, C,
                                                   stream_));
  }
  return Status::ok();
}

Status CudaBackend::matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N,
                                   int C, int OC) {
  PERIGEE_CHECK(check_matmul_forward_operands("matmul_forward", out, nullptr, inp, weight, bias, N, C, OC));
  if (all_f32({out, inp})) return matmul_forward_f32(out.f32(), inp.f32(), weight, bias, N, C, OC);
  if (precision_ == GpuPrecision::kBf16) {
    const Status s = cuda::matmul_forward_bf16(out, inp, weight, bias, N, C, OC, *lt_, scratch_, stream_,
                                               cached_weight(weight, static_cast<size_t>(OC) * C));
    if (s.code() != StatusCode::kUnavailable) return s;  // else: no bf16 D here, round an fp32 result
  }
  return cast_matmul_forward(*this, cast_fallback(), out, inp, weight, bias, N, C, OC);
}

Status CudaBackend::matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                    const float* weight, int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_backward_operands("matmul_backward", dinp, dweight, dbias, dout, inp, weight,
                                               nullptr, N, C, OC));
  if (all_f32({dinp, dout, inp})) {
    return matmul_backward_f32(dinp.f32(), dweight, dbias, dout.f32(), inp.f32(), weight, N, C, OC);
  }
  if (precision_ == GpuPrecision::kBf16) {
    const Status s =
        cuda::matmul_backward_bf16(dinp, dweight, dbias, dout, inp, weight, N, C, OC, *lt_, scratch_, stream_,
                                   cached_weight(weight, static_cast<size_t>(OC) * C));
    if (s.code() != StatusCode::kUnavailable) return s;  // else: no bf16 D here, round an fp32 result
  }
  return cast_matmul_backward(*this, cast_fallback(), dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

Status CudaBackend::matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight,
                                        const float* bias, int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_forward_operands("matmul_gelu_forward", out, pre, inp, weight, bias, N, C, OC));
  if (fuses_gelu()) {
    const Status s =
        cuda::matmul_gelu_forward_bf16(pre, out, inp, weight, bias, N, C, OC, *lt_, scratch_, stream_,
                                       cached_weight(weight, static_cast<size_t>(OC) * C));
    if (s.code() != StatusCode::kUnavailable) return s;  // else: no fused algorithm here, run the ops apart
  }
  return Backend::matmul_gelu_forward(pre, out, inp, weight, bias, N, C, OC);
}

Status CudaBackend::matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                         const float* weight, ConstAct pre, int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_backward_operands("matmul_backward_gelu", dpre, dweight, dbias, dout, inp,
                                               weight, pre, N, C, OC));
  if (fuses_gelu() && dpre.data != nullptr) {
    const Status s = cuda::matmul_backward_gelu_bf16(dpre, dweight, dbias, dout, inp, weight, pre, N, C, OC,
                                                     *lt_, scratch_, stream_,
                                                     cached_weight(weight, static_cast<size_t>(OC) * C));
    if (s.code() != StatusCode::kUnavailable) return s;  // else: no fused algorithm here, run the ops apart
  }
  return Backend::matmul_backward_gelu(dpre, dweight, dbias, dout, inp, weight, pre, N, C, OC);
}

Status CudaBackend::attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) {
  if (all_f32({out, qkv})) return attention_forward_f32(out.f32(), att, qkv.f32(), B, T, C, NH);
  if (bf16_attention(C, NH) && !out.is_f32()) {
    PERIGEE_CHECK(qkv.is_f32() ? cuda::attention_forward_bf16(out.bf16(), att, qkv.f32(), B, T, C, NH,
                                                              stream_, kernel_variants_, &variant_runs_)
                               : cuda::attention_forward_bf16(out.bf16(), att, qkv.bf16(), B, T, C, NH,
                                                              stream_, kernel_variants_, &variant_runs_));
    return Status::ok();
  }
  return cast_attention_forward(*this, cast_fallback(), out, att, qkv, B, T, C, NH);
}

Status CudaBackend::attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att,
                                       int B, int T, int C, int NH) {
  if (all_f32({dqkv, dout, qkv, out})) {
    return attention_backward_f32(dqkv.f32(), dout.f32(), qkv.f32(), out.f32(), att, B, T, C, NH);
  }
  if (bf16_attention(C, NH) && dout.is_f32() && !dqkv.is_f32() && !out.is_f32()) {
    PERIGEE_CHECK(
        qkv.is_f32()
            ? cuda::attention_backward_bf16(dqkv.bf16(), dout.f32(), qkv.f32(), out.bf16(), att, B, T, C, NH,
                                            scratch_, stream_, kernel_variants_, &variant_runs_)
            : cuda::attention_backward_bf16(dqkv.bf16(), dout.f32(), qkv.bf16(), out.bf16(), att, B, T, C, NH,
                                            scratch_, stream_, kernel_variants_, &variant_runs_));
    return Status::ok();
  }
  return cast_attention_backward(*this, cast_fallback(), dqkv, dout, qkv, out, att, B, T, C, NH);
}

// GELU: every storage combination is native, except an output written over an input of the other
// storage type (the kernels would race), which goes through fp32 scratch as on the CPU backend.
Status CudaBackend::gelu_forward(Act out, ConstAct inp, size_t n) {
  if (overlaps_other_storage(out, inp, n)) return cast_gelu_forward(*this, cast_fallback(), out, inp, n);
  PERIGEE_CHECK(cuda::gelu_forward(out, inp, n, stream_));
  return Status::ok();
}

Status CudaBackend::crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits,
                                                  const int32_t* targets, float dloss, int N, int V, int Vp) {
  PERIGEE_CHECK(check_alias_storage("crossentropy_forward_backward", dlogits, logits,
                                    static_cast<size_t>(N) * static_cast<size_t>(Vp)));
  if (all_f32({dlogits, logits})) {
    return crossentropy_forward_backward_f32(losses, dlogits.f32(), logits.f32(), targets, dloss, N, V, Vp);
  }
  // Every other storage combination is native: the kernel loads and stores either type.
  const size_t staged = crossentropy_staged_bytes();
  if (logits.is_f32()) {
    PERIGEE_CHECK(cuda::crossentropy_forward_backward(losses, dlogits.bf16(), logits.f32(), targets, dloss, N,
                                                      V, Vp, stream_, staged, &variant_runs_));
  } else if (dlogits.is_f32()) {
    PERIGEE_CHECK(cuda::crossentropy_forward_backward(losses, dlogits.f32(), logits.bf16(), targets, dloss, N,
                                                      V, Vp, stream_, staged, &variant_runs_));
  } else {
    PERIGEE_CHECK(cuda::crossentropy_forward_backward(losses, dlogits.bf16(), logits.bf16(), targets, dloss,
                                                      N, V, Vp, stream_, staged, &variant_runs_));
  }
  return Status::ok();
}

Status CudaBackend::gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) {
  if (overlaps_other_storage(dinp, inp, n) || overlaps_other_storage(dinp, dout, n)) {
    return cast_gelu_backward(*this, cast_fallback(), dinp, inp, dout, n);
  }
  PERIGEE_CHECK(cuda::gelu_backward(dinp, inp, dout, n, stream_));
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
