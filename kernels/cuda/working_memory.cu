// CudaBackend's working memory (kernels/working_memory.hpp): what the most demanding of a list of op
// calls takes from the device scratch, from each kernel family's own size function (the one its
// launcher passes to DeviceScratch::get), plus what the most demanding takes from the ActCast path's
// CastScratch (calls with bf16 storage that no native kernel takes: fp32 or TF32 precision, or a
// bf16-output GEMM cuBLASLt has no algorithm for); and reserving both before the first step.
#include "kernels/act_cast.hpp"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/encoder.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/reduce.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr DType kF32 = DType::kF32, kBF16 = DType::kBF16;

size_t cast_bytes(std::initializer_list<size_t> floats) {
  size_t sum = 0;
  for (size_t f : floats) sum += f;
  return sum * sizeof(float);
}

}  // namespace

// Upper bounds for one call as this backend would run it now (precision, kernel variants, shared
// memory limit, cuBLASLt's algorithms). Two choices made per call are taken at their most: the weight
// cache may not hold a weight (it is rounded into scratch then), and a bf16 qkv may not be readable in
// place (misaligned, or overlapping dqkv). Not covered: a launch cuBLASLt refuses although its plan
// was found (counted as refused_at_launch; the call then takes the ActCast path on demand).
Status CudaBackend::op_working_memory(const OpCall& c, size_t* scratch, size_t* cast) const {
  using Op = OpCall::Op;
  const bool lt = precision_ == GpuPrecision::kBf16;
  const size_t N = c.N, C = c.C, OC = c.OC, n = N * C;
  auto temp = [](DType t, size_t count) { return ActCast::temp_floats(t, count); };
  // The GEMMs' weights come from the bf16 cache at any 16-byte boundary (cached_weight), else from
  // 256-byte aligned scratch; the model's activations and a rounded bias are 256-byte aligned. An
  // algorithm for 16-byte aligned weights serves every better aligned one.
  const LtAlign weights{.a = weight_cache_on_ ? 16 : 256};
  *scratch = 0;
  *cast = 0;
  switch (c.op) {
    case Op::kEncoderBackward:
      return encoder_backward_scratch_bytes(c.B, c.T, scratch);
    case Op::kLayerNormBackward:
      *scratch = layernorm_backward_scratch_bytes(c.N, c.C);
      return Status::ok();
    case Op::kSumSquares:
      *scratch = sum_squares_scratch_bytes(c.n);
      return Status::ok();
    case Op::kGeluForward:  // native bf16 kernels: no temporaries
    case Op::kGeluBackward:
      return Status::ok();
    case Op::kMatmulForward: {
      // The fp32 form: cuBLASLt takes bf16 copies of the fp32 operands; cuBLAS reads them in place.
      *scratch = lt ? matmul_forward_bf16_scratch_bytes(c.N, c.C, c.OC, kF32, kF32, c.bias, false) : 0;
      if (c.inp == kF32 && c.out == kF32) return Status::ok();
      bool native = lt;
      if (native && c.out == kBF16) {
        PERIGEE_CHECK(lt_->available(true, false, c.OC, c.N, c.C, c.C, c.C, c.OC, kBF16, c.bias,
                                     LtEpilogue::kNone, weights, &native));
      }
      if (native) {
        *scratch = matmul_forward_bf16_scratch_bytes(c.N, c.C, c.OC, c.inp, c.out, c.bias, false);
      } else {  // ActCast: inp and out widened, a bf16 out's bias rounded, then the fp32 form
        *cast = cast_bytes({temp(c.inp, n), temp(c.out, N * OC),
                            c.out == kBF16 && c.bias ? ActCast::temp_floats(kF32, OC, true) : 0});
      }
      return Status::ok();
    }
    case Op::kMatmulBackward: {
      *scratch = lt       ? matmul_backward_bf16_scratch_bytes(c.N, c.C, c.OC, kF32, kF32, c.dinp, c.dweight,
                                                               c.bias, false)
                 : c.bias ? scratch_bytes<double>(matmul_bias_grad_partials(c.N, c.OC))
                          : 0;
      if (c.out == kF32 && c.dout == kF32 && c.inp == kF32) return Status::ok();
      bool native = lt;
      if (native && c.dinp && c.out == kBF16) {
        PERIGEE_CHECK(lt_->available(false, false, c.C, c.N, c.OC, c.C, c.OC, c.C, kBF16, false,
                                     LtEpilogue::kNone, weights, &native));
      }
      if (native) {
        *scratch = matmul_backward_bf16_scratch_bytes(c.N, c.C, c.OC, c.dout, c.inp, c.dinp, c.dweight,
                                                      c.bias, false);
      } else {  // ActCast: dout, inp (for dweight) and dinp widened, then the fp32 form
        *cast =
            cast_bytes({temp(c.dout, N * OC), c.dweight ? temp(c.inp, n) : 0, c.dinp ? temp(c.out, n) : 0});
      }
      return Status::ok();
    }
    case Op::kAttentionForward:  // no scratch; ActCast when no bf16 kernel writes `out`
      if ((c.out != kF32 || c.inp != kF32) && !(bf16_attention(c.C, c.NH) && c.out == kBF16))
        *cast = cast_bytes({temp(c.inp, 3 * n), temp(c.out, n)});
      return Status::ok();
    case Op::kAttentionBackward: {
      *scratch = bf16_attention(c.C, c.NH)
                     ? attention_backward_bf16_scratch_bytes(c.B, c.T, c.C, c.NH, false, kernel_variants_)
                     : scratch_bytes<float>(attention_state_floats(c.B, c.T, c.NH));
      const bool all_f32 = c.out == kF32 && c.dout == kF32 && c.inp == kF32;
      const bool native = bf16_attention(c.C, c.NH) && c.dout == kF32 && c.out == kBF16 && c.inp == kBF16;
      if (!all_f32 && !native)  // ActCast: dout, qkv, the forward's out and dqkv widened
        *cast = cast_bytes({temp(c.dout, n), temp(c.inp, 3 * n), temp(c.inp, n), temp(c.out, 3 * n)});
      return Status::ok();
    }
  }
  return Status::ok();
}

Status CudaBackend::working_memory(std::span<const OpCall> calls, size_t* scratch, size_t* cast) const {
  *scratch = 0;
  *cast = 0;
  for (const OpCall& c : calls) {
    size_t s = 0, k = 0;
    PERIGEE_CHECK(op_working_memory(c, &s, &k));
    *scratch = std::max(*scratch, s);
    *cast = std::max(*cast, k);
  }
  return Status::ok();
}

Status CudaBackend::working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const {
  size_t scratch = 0, cast = 0;
  PERIGEE_CHECK(working_memory(calls, &scratch, &cast));
  *bytes = static_cast<uint64_t>(scratch) + cast;
  return Status::ok();
}

Status CudaBackend::reserve_working_memory(std::span<const OpCall> calls) {
  size_t scratch = 0, cast = 0;
  PERIGEE_CHECK(working_memory(calls, &scratch, &cast));
  PERIGEE_CHECK(scratch_.reserve(scratch, stream_));
  if (cast > 0) {
    void* unused = nullptr;
    PERIGEE_CHECK(cast_scratch_.reserve(*this, cast, &unused));
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
