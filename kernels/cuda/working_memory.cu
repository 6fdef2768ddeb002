// CudaBackend's working memory (kernels/working_memory.hpp): the scratch the largest of a list of op
// calls asks for, from each kernel family's own size function (the one its launcher passes to
// DeviceScratch::get), and reserving that much before the first step.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/encoder.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/reduce.cuh"

namespace perigee::kernels::cuda {

// An upper bound for one call as this backend would run it now (precision, kernel variants, shared
// memory limit). Two choices made per call are taken at their most: the weight cache may not hold a
// weight (it is rounded into scratch then), and a bf16 qkv may not be readable in place (misaligned,
// or overlapping dqkv). The ActCast fallback's temporaries (CastScratch) are not included: the model's
// storage combinations do not take it.
Status CudaBackend::op_scratch_bytes(const OpCall& c, size_t* bytes) const {
  using Op = OpCall::Op;
  const bool bf16 = precision_ == GpuPrecision::kBf16;
  *bytes = 0;
  switch (c.op) {
    case Op::kEncoderBackward:
      return encoder_backward_scratch_bytes(c.B, c.T, bytes);
    case Op::kLayerNormBackward:
      *bytes = layernorm_backward_scratch_bytes(c.N, c.C);
      break;
    case Op::kSumSquares:
      *bytes = sum_squares_scratch_bytes(c.n);
      break;
    case Op::kMatmulForward:  // cuBLAS reads fp32 operands in place
      if (bf16) *bytes = matmul_forward_bf16_scratch_bytes(c.N, c.C, c.OC, c.inp, c.out, c.bias, false);
      break;
    case Op::kMatmulBackward:
      if (bf16) {
        *bytes = matmul_backward_bf16_scratch_bytes(c.N, c.C, c.OC, c.dout, c.inp, c.dinp, c.dweight, c.bias,
                                                    false);
      } else if (c.bias) {
        *bytes = scratch_bytes<double>(matmul_bias_grad_partials(c.N, c.OC));
      }
      break;
    case Op::kAttentionBackward:
      *bytes = bf16_attention(c.C, c.NH)
                   ? attention_backward_bf16_scratch_bytes(c.B, c.T, c.C, c.NH, false, kernel_variants_)
                   : scratch_bytes<float>(attention_state_floats(c.B, c.T, c.NH));
      break;
  }
  return Status::ok();
}

Status CudaBackend::working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const {
  *bytes = 0;
  for (const OpCall& c : calls) {
    size_t one = 0;
    PERIGEE_CHECK(op_scratch_bytes(c, &one));
    *bytes = std::max<uint64_t>(*bytes, one);
  }
  return Status::ok();
}

Status CudaBackend::reserve_working_memory(std::span<const OpCall> calls) {
  uint64_t bytes = 0;
  PERIGEE_CHECK(working_memory_bytes(calls, &bytes));
  PERIGEE_CHECK(scratch_.reserve(bytes, stream_));
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
