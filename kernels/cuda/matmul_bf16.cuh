// Linear layer on bf16 tensor cores (mixed precision) through cuBLASLt. Same layouts and semantics as
// matmul.cuh: row-major inp [N, C], weight [OC, C], bias [OC], out [N, OC]; out = inp @ weight^T + bias;
// the backward writes dinp and accumulates dweight and dbias (+=).
// Precision: inp, weight and dout (fp32 in memory) are rounded to bf16 (round to nearest even) into
// the backend's scratch buffer just before each GEMM, except a weight the caller passes already
// rounded (CudaBackend's weight cache: the same values, read in place); the GEMMs take bf16 A and B,
// accumulate in fp32 (CUBLAS_COMPUTE_32F) and read and write fp32 C/D. The forward adds the bias in the
// GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS; fp32 for an fp32 D); dbias is the fp32 deterministic column sum of
// matmul.cuh, computed in the same pass that rounds dout to bf16. Outputs (out, dinp) may be stored as bf16
// (kernels/act.hpp): cuBLASLt then writes D as bf16, each element rounded once (to nearest even) from its
// fp32 accumulator plus the bias; cuBLASLt's bias has D's type, so for a bf16 D the bias is first
// rounded to bf16 (as PyTorch's autocast does), then added in fp32. Where cuBLASLt has no algorithm for a
// bf16 D, the launchers return kUnavailable before doing any work and the caller takes the fp32-then-round
// path (kernels/act_cast.hpp), which rounds the bias the same way. GELU epilogues (CudaBackend with
// gelu_fusion on): the MLP's c_fc GEMM can apply GELU in cuBLASLt's epilogue (GELU_AUX_BIAS: D = gelu(acc +
// bias), aux = acc + bias, both of D's type, each rounded once from fp32), and the c_proj backward's dinp
// GEMM can multiply by GELU's derivative at the saved pre-GELU values (DGELU: D = gelu'(aux) * acc, rounded
// once). cuBLASLt evaluates the same tanh approximation with its own instructions, so results may differ from
// gelu.cuh's in the last bits; where it has no such algorithm the launchers return kUnavailable before any
// work. Determinism: one cuBLASLt algorithm is chosen per GEMM shape (and per operand alignment) on first use
// and kept (the first of the heuristic's up to 8 answers for a 32 MiB workspace that is usable: for a
// bf16 D or an epilogue, one that cublasLtMatmulAlgoCheck accepts), so repeated steps run the same
// kernels in the same order. A bf16 D is
// never split-K reduced in bf16 (the reduction runs in fp32 or not at all): each element is rounded once.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "core/status.hpp"
#include "kernels/act.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

// dst[i] = bf16(src[i]), round to nearest even, on `stream`.
Status convert_to_bf16(__nv_bfloat16* dst, const float* src, size_t n, cudaStream_t stream);

// What a GEMM's epilogue applies after the bias: nothing, GELU (the pre-GELU values kept in an aux
// matrix), or GELU's derivative at a given aux matrix. The aux matrix has D's type, shape and ldd.
enum class LtEpilogue : uint8_t { kNone, kGeluAux, kDGelu };
struct LtAux {
  LtEpilogue kind = LtEpilogue::kNone;
  const void* data = nullptr;  // kGeluAux: written; kDGelu: read
};

// The alignment in bytes (a power of two, at most 256) of each operand of one GEMM: A, B, D (also C),
// the bias vector and the aux matrix. Plans are made for the alignments the operands really have
// (cuBLASLt's heuristic otherwise assumes 256 bytes), per operand, so that one poorly aligned
// operand (a packed bias) lowers only its own requirement.
struct LtAlign {
  int a = 256, b = 256, d = 256, bias = 256, aux = 256;
  // The largest power of two up to 256 that divides p (256 for null).
  static int of(const void* p);
};

// A cuBLASLt handle, its workspace and the plans (descriptors and chosen algorithm) per GEMM shape.
class LtGemm {
 public:
  static Status create(std::unique_ptr<LtGemm>* out);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Column-major D[m, n] = op(A) op(B) + beta * D (+ bias[m] on every column when bias is set, then
  // the epilogue of `aux`), A and B bf16 (op = transpose when trans_*), D fp32 or bf16 (beta 0 only)
  // with leading dimension ldd; bias (or null) must have D's type (fp32 or bf16: cuBLASLt has no fp32
  // bias for a bf16 D; kInvalidArgument otherwise). kUnavailable when cuBLASLt has no algorithm for a bf16 D
  // or for that epilogue at this shape, or the aux matrix is not 16-byte aligned (nothing is run then). An
  // fp32 D whose bias epilogue has no algorithm gets the bias added in a pass of its own
  // (counts().bias_apart).
  Status gemm(bool trans_a, bool trans_b, int m, int n, int k, const __nv_bfloat16* A, int lda,
              const __nv_bfloat16* B, int ldb, float beta, Act D, int ldd, ConstAct bias, cudaStream_t stream,
              LtAux aux = {});
  // What gemm() has launched so far (tests check that a fused op really ran fused).
  struct Counts {
    uint64_t launches = 0;           // cublasLtMatmul calls that ran
    uint64_t bf16_d = 0;             // of which wrote a bf16 D
    uint64_t gelu_aux = 0;           // of which applied GELU_AUX_BIAS
    uint64_t dgelu = 0;              // of which applied DGELU
    uint64_t refused_at_launch = 0;  // launches cuBLASLt refused (plan dropped, kUnavailable)
    uint64_t bias_apart = 0;         // fp32-D calls whose bias was added in a pass of its own
  };
  const Counts& counts() const { return counts_; }
  // Off: fp32-D calls with a bias always take the bias-apart path (for tests; on by default).
  void set_bias_epilogue(bool on) { bias_epilogue_ = on; }

  // Whether gemm() has an algorithm for this call (plans it on first use; only a bf16 D, a bias or an
  // epilogue other than kNone can lack one). `align`: the call's operands' alignments.
  Status available(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd, DType d_type,
                   bool bias, LtEpilogue epilogue, const LtAlign& align, bool* yes);

 private:
  LtGemm() = default;
  struct Plan;
  // (trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, accumulate, D is bf16, epilogue, alignments of
  // A, B, D, bias, aux)
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, bool, bool, bool, LtEpilogue, int, int,
                         int, int, int>;
  static Key key_of(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd, bool bias,
                    bool accumulate, bool d_bf16, LtEpilogue epilogue, const LtAlign& align);
  // *out null (and ok) when a bf16 D, a bias or an epilogue has no algorithm; that answer is kept too.
  Status plan_for(const Key& key, const Plan** out);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  Counts counts_;
  bool bias_epilogue_ = true;
};

// inp (and in the backward dout and inp) may be fp32 or bf16 storage (kernels/act.hpp): a bf16 operand
// is the GEMM's operand as it is, with no rounding pass; an fp32 one is rounded into scratch first.
// out (dinp) may be bf16: see the top of this file for kUnavailable. weight16 (every launcher below):
// the weight already rounded to bf16 ([OC, C], a copy of `weight` such as CudaBackend's weight cache),
// read in place instead of rounding `weight` into scratch; null: round it here.
Status matmul_forward_bf16(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                           int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream,
                           const __nv_bfloat16* weight16 = nullptr);

// dinp, dweight, dbias may each be null (not needed).
Status matmul_backward_bf16(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                            const float* weight, int N, int C, int OC, LtGemm& lt, DeviceScratch& scratch,
                            cudaStream_t stream, const __nv_bfloat16* weight16 = nullptr);

// Backend::matmul_gelu_forward in one GEMM (GELU_AUX_BIAS): out = gelu(pre), pre kept. pre and out
// have one storage type; kUnavailable (before any work) otherwise or without an algorithm.
Status matmul_gelu_forward_bf16(Act pre, Act out, ConstAct inp, const float* weight, const float* bias, int N,
                                int C, int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream,
                                const __nv_bfloat16* weight16 = nullptr);

// Backend::matmul_backward_gelu with the dinp GEMM's DGELU epilogue: dpre = gelu'(pre) * (dout @ weight),
// rounded once. dpre and pre have one storage type; kUnavailable (before any work) otherwise or
// without an algorithm.
Status matmul_backward_gelu_bf16(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                 const float* weight, ConstAct pre, int N, int C, int OC, LtGemm& lt,
                                 DeviceScratch& scratch, cudaStream_t stream,
                                 const __nv_bfloat16* weight16 = nullptr);

// The scratch bytes the launchers above take: bf16 copies of the fp32 operands, of the weight when
// not cached (weight16 null), of a bias added to a bf16 output, and the bias gradient's partials.
// The GELU forms take what the plain ones do.
size_t matmul_forward_bf16_scratch_bytes(int N, int C, int OC, DType inp, DType out, bool bias,
                                         bool weight_cached);
size_t matmul_backward_bf16_scratch_bytes(int N, int C, int OC, DType dout, DType inp, bool dinp,
                                          bool dweight, bool dbias, bool weight_cached);

// Whether the two launchers above run fused for these shapes and storage (plans on first use).
Status gelu_forward_fusable(LtGemm& lt, int N, int C, int OC, DType type, bool bias, bool* yes);
Status gelu_backward_fusable(LtGemm& lt, int N, int C, int OC, DType type, bool* yes);

}  // namespace perigee::kernels::cuda
