// Linear layer on bf16 tensor cores (mixed precision) through cuBLASLt. Same layouts and semantics as
// matmul.cuh: row-major inp [N, C], weight [OC, C], bias [OC], out [N, OC]; out = inp @ weight^T + bias;
// the backward writes dinp and accumulates dweight and dbias (+=).
// Precision: inp, weight and dout (fp32 in memory) are rounded to bf16 (round to nearest even) into
// the backend's scratch buffer just before each GEMM; the GEMMs take bf16 A and B, accumulate in fp32
// (CUBLAS_COMPUTE_32F) and read and write fp32 C/D. The forward adds the fp32 bias in the GEMM's
// epilogue (CUBLASLT_EPILOGUE_BIAS); dbias is the fp32 deterministic column sum of matmul.cuh, computed
// in the same pass that rounds dout to bf16.
// Outputs (out, dinp) may be stored as bf16 (kernels/act.hpp): cuBLASLt then writes D as bf16, each
// element rounded once (to nearest even) from its fp32 accumulator plus the fp32 bias. Where cuBLASLt
// has no algorithm for a bf16 D, the launchers return kUnavailable before doing any work and the
// caller takes the fp32-then-round path (kernels/act_cast.hpp).
// Determinism: one cuBLASLt algorithm is chosen per GEMM shape on first use and kept (the heuristic's
// first answer for a 32 MiB workspace), so repeated steps run the same kernels in the same order.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>

#include "core/status.hpp"
#include "kernels/act.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

// dst[i] = bf16(src[i]), round to nearest even, on `stream`.
Status convert_to_bf16(__nv_bfloat16* dst, const float* src, size_t n, cudaStream_t stream);

// A cuBLASLt handle, its workspace and the plans (descriptors and chosen algorithm) per GEMM shape.
class LtGemm {
 public:
  static Status create(std::unique_ptr<LtGemm>* out);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Column-major D[m, n] = op(A) op(B) + beta * D (+ bias[m] on every column when bias is set),
  // A and B bf16 (op = transpose when trans_*), D fp32 or bf16 (beta 0 only) with leading dimension
  // ldd. kUnavailable when cuBLASLt has no algorithm for a bf16 D of this shape.
  Status gemm(bool trans_a, bool trans_b, int m, int n, int k, const __nv_bfloat16* A, int lda,
              const __nv_bfloat16* B, int ldb, float beta, Act D, int ldd, const float* bias,
              cudaStream_t stream);
  // Whether gemm() has an algorithm for this call (plans it on first use; only a bf16 D can lack one).
  Status available(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd, DType d_type,
                   bool bias, bool* yes);

 private:
  LtGemm() = default;
  struct Plan;
  // (trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, accumulate, D is bf16)
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, bool, bool, bool>;
  // *out null (and ok) when a bf16 D has no algorithm; that answer is kept too.
  Status plan_for(const Key& key, const Plan** out);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

// inp (and in the backward dout and inp) may be fp32 or bf16 storage (kernels/act.hpp): a bf16 operand
// is the GEMM's operand as it is, with no rounding pass; an fp32 one is rounded into scratch first.
// out (dinp) may be bf16: see the top of this file for kUnavailable.
Status matmul_forward_bf16(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                           int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream);

// dinp, dweight, dbias may each be null (not needed).
Status matmul_backward_bf16(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                            const float* weight, int N, int C, int OC, LtGemm& lt, DeviceScratch& scratch,
                            cudaStream_t stream);

}  // namespace perigee::kernels::cuda
