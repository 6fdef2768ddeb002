// Linear layer on bf16 tensor cores: fp32 -> bf16 conversion, cuBLASLt plans per shape (see
// matmul_bf16.cuh).
#include "kernels/cuda/matmul_bf16.cuh"

#include <cstdint>

#include "kernels/cuda/cublas_check.cuh"
#include "kernels/cuda/matmul.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper
constexpr int kConvertBlock = 256;

// ---- CUDA kernels

// Four elements per thread: float4 loads and two bf16x2 stores when both pointers allow it.
__global__ void convert_to_bf16_vec4_kernel(__nv_bfloat16* dst, const float* src, size_t n4) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 v = reinterpret_cast<const float4*>(src)[i];
    __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(dst) + 2 * i;
    out[0] = __floats2bfloat162_rn(v.x, v.y);
    out[1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

__global__ void convert_to_bf16_kernel(__nv_bfloat16* dst, const float* src, size_t begin, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = begin + static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = __float2bfloat16_rn(src[i]);
}

// The bf16 bits of a bf16 activation tensor as cuBLASLt's element type (the same 16 bits).
const __nv_bfloat16* as_bf16(ConstAct a) {
  return reinterpret_cast<const __nv_bfloat16*>(a.bf16());
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

// ---- conversion

Status convert_to_bf16(__nv_bfloat16* dst, const float* src, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("convert_to_bf16", {dst, src}));
  size_t done = 0;
  if (aligned(src, 16) && aligned(dst, 8) && n >= 4) {
    const size_t n4 = n / 4;
    convert_to_bf16_vec4_kernel<<<flat_grid(n4, kConvertBlock), kConvertBlock, 0, stream>>>(dst, src, n4);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    done = n4 * 4;
  }
  if (done < n) {
    convert_to_bf16_kernel<<<flat_grid(n - done, kConvertBlock), kConvertBlock, 0, stream>>>(dst, src, done,
                                                                                             n);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  return Status::ok();
}

// ---- cuBLASLt plans

struct LtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

Status LtGemm::create(std::unique_ptr<LtGemm>* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "LtGemm::create: null output pointer");
  std::unique_ptr<LtGemm> lt(new LtGemm());
  PERIGEE_CHECK_CUBLAS(cublasLtCreate(&lt->handle_));
  PERIGEE_CHECK_CUDA(cudaMalloc(&lt->workspace_, kLtWorkspaceBytes));
  *out = std::move(lt);
  return Status::ok();
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

Status LtGemm::plan_for(const Key& key, const Plan** out) {
  if (auto it = plans_.find(key); it != plans_.end()) {
    *out = it->second.get();  // null: a bf16 D without an algorithm
    return Status::ok();
  }
  const auto [trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, accumulate, d_bf16] = key;
  auto plan = std::make_unique<Plan>();
  PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                        sizeof(epilogue)));
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                        &bias_type, sizeof(bias_type)));
  }
  // Stored shapes (column-major): A is m x k, or k x m when transposed; B is k x n, or n x k.
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, trans_a ? k : m, trans_a ? m : k, lda));
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, trans_b ? n : k, trans_b ? k : n, ldb));
  PERIGEE_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&plan->d, d_bf16 ? CUDA_R_16BF : CUDA_R_32F, m, n, ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  PERIGEE_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  const size_t workspace = kLtWorkspaceBytes;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace, sizeof(workspace));
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1,
                                        &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (d_bf16 && (st != CUBLAS_STATUS_SUCCESS || found == 0)) {
    plans_.emplace(key, nullptr);  // no bf16 D here: callers round an fp32 result instead
    *out = nullptr;
    return Status::ok();
  }
  PERIGEE_CHECK_CUBLAS(st);
  PERIGEE_REQUIRE(found > 0, StatusCode::kCublasError, "cuBLASLt has no bf16 algorithm for m=", m, " n=", n,
                  " k=", k, " (", trans_a ? "T" : "N", trans_b ? "T" : "N", ", bias ", bias ? "yes" : "no",
                  ", accumulate ", accumulate ? "yes" : "no", ")");
  plan->algo = result.algo;
  *out = plan.get();
  plans_.emplace(key, std::move(plan));
  return Status::ok();
}

Status LtGemm::available(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd,
                         DType d_type, bool bias, bool* yes) {
  const Plan* plan = nullptr;
  PERIGEE_CHECK(
      plan_for(Key{trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, false, d_type == DType::kBF16}, &plan));
  *yes = plan != nullptr;
  return Status::ok();
}

Status LtGemm::gemm(bool trans_a, bool trans_b, int m, int n, int k, const __nv_bfloat16* A, int lda,
                    const __nv_bfloat16* B, int ldb, float beta, Act D, int ldd, const float* bias,
                    cudaStream_t stream) {
  const bool d_bf16 = !D.is_f32();
  PERIGEE_REQUIRE(!d_bf16 || beta == 0.0f, StatusCode::kInvalidArgument,
                  "LtGemm: a bf16 D is written, not accumulated (beta must be 0)");
  const Plan* plan = nullptr;
  PERIGEE_CHECK(
      plan_for(Key{trans_a, trans_b, m, n, k, lda, ldb, ldd, bias != nullptr, beta != 0.0f, d_bf16}, &plan));
  PERIGEE_REQUIRE(plan != nullptr, StatusCode::kUnavailable,
                  "cuBLASLt has no algorithm writing bf16 for m=", m, " n=", n, " k=", k);
  if (bias != nullptr) {
    // The pointer is per call; the descriptor is this plan's own (one op at a time per backend).
    PERIGEE_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.0f;
  PERIGEE_CHECK_CUBLAS(cublasLtMatmul(handle_, plan->desc, &alpha, A, plan->a, B, plan->b, &beta, D.data,
                                      plan->d, D.data, plan->d, &plan->algo, workspace_, kLtWorkspaceBytes,
                                      stream));
  return Status::ok();
}

// ---- kernel launchers

Status matmul_forward_bf16(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                           int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_forward", {out.data, inp.data, weight}));
  PERIGEE_CHECK(check_dims("matmul_forward", {N, C, OC}));
  if (!out.is_f32()) {
    bool ok = false;
    PERIGEE_CHECK(lt.available(true, false, OC, N, C, C, C, OC, out.dtype, bias != nullptr, &ok));
    PERIGEE_REQUIRE(ok, StatusCode::kUnavailable,
                    "matmul_forward: no cuBLASLt algorithm writes bf16 for N=", N, " C=", C, " OC=", OC);
  }
  const size_t n_w = static_cast<size_t>(OC) * C;
  const size_t n_inp = inp.is_f32() ? static_cast<size_t>(N) * C : 0;  // a bf16 inp needs no copy
  void* base = nullptr;
  PERIGEE_CHECK(
      scratch.get(scratch_bytes<__nv_bfloat16>(n_inp) + scratch_bytes<__nv_bfloat16>(n_w), stream, &base));
  ScratchCarver carve(base);
  const __nv_bfloat16* inp16 = as_bf16(inp);
  if (inp.is_f32()) {
    __nv_bfloat16* copy = carve.take<__nv_bfloat16>(n_inp);
    PERIGEE_CHECK(convert_to_bf16(copy, inp.f32(), n_inp, stream));
    inp16 = copy;
  }
  __nv_bfloat16* w16 = carve.take<__nv_bfloat16>(n_w);
  PERIGEE_CHECK(convert_to_bf16(w16, weight, n_w, stream));
  // out^T [OC, N] = weight (stored col-major C x OC, transposed) . inp^T [C, N], + bias per row.
  PERIGEE_CHECK(lt.gemm(true, false, OC, N, C, w16, C, inp16, C, 0.0f, out, OC, bias, stream));
  return Status::ok();
}

Status matmul_backward_bf16(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                            const float* weight, int N, int C, int OC, LtGemm& lt, DeviceScratch& scratch,
                            cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_backward", {dout.data}));
  PERIGEE_CHECK(check_dims("matmul_backward", {N, C, OC}));
  if (dinp.data != nullptr && !dinp.is_f32()) {
    bool ok = false;
    PERIGEE_CHECK(lt.available(false, false, C, N, OC, C, OC, C, dinp.dtype, false, &ok));
    PERIGEE_REQUIRE(ok, StatusCode::kUnavailable,
                    "matmul_backward: no cuBLASLt algorithm writes a bf16 dinp for N=", N, " C=", C,
                    " OC=", OC);
  }
  if (dinp.data != nullptr) PERIGEE_CHECK(check_pointers("matmul_backward (dinp needs weight)", {weight}));
  if (dweight != nullptr) PERIGEE_CHECK(check_pointers("matmul_backward (dweight needs inp)", {inp.data}));
  const bool gemms = dinp.data != nullptr || dweight != nullptr;
  const size_t n_partial = dbias != nullptr ? matmul_bias_grad_partials(N, OC) : 0;
  if (!gemms && dbias == nullptr) return Status::ok();
  if (!gemms && dout.is_f32()) return matmul_bias_grad(dbias, dout.f32(), N, OC, scratch, stream);
  // Only fp32 operands are copied: a bf16 dout or inp is used in place.
  const size_t n_dout = gemms && dout.is_f32() ? static_cast<size_t>(N) * OC : 0;
  const size_t n_w = dinp.data != nullptr ? static_cast<size_t>(OC) * C : 0;
  const size_t n_inp = dweight != nullptr && inp.is_f32() ? static_cast<size_t>(N) * C : 0;
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(scratch_bytes<__nv_bfloat16>(n_dout) + scratch_bytes<__nv_bfloat16>(n_w) +
                                scratch_bytes<__nv_bfloat16>(n_inp) + scratch_bytes<double>(n_partial),
                            stream, &base));
  ScratchCarver carve(base);
  __nv_bfloat16* dout_copy = carve.take<__nv_bfloat16>(n_dout);
  __nv_bfloat16* w16 = carve.take<__nv_bfloat16>(n_w);
  __nv_bfloat16* inp_copy = carve.take<__nv_bfloat16>(n_inp);
  double* partial = carve.take<double>(n_partial);
  const __nv_bfloat16* dout16 = dout.is_f32() ? dout_copy : as_bf16(dout);
  if (dout.is_f32()) {
    // dout is read once: the bias gradient's column sums (fp32 values) and its bf16 copy together.
    if (dbias != nullptr) {
      PERIGEE_CHECK(matmul_bias_grad(dbias, dout_copy, dout.f32(), N, OC, partial, stream));
    } else {
      PERIGEE_CHECK(convert_to_bf16(dout_copy, dout.f32(), n_dout, stream));
    }
  } else if (dbias != nullptr) {
    PERIGEE_CHECK(matmul_bias_grad(dbias, dout.bf16(), N, OC, partial, stream));
  }
  if (!gemms) return Status::ok();
  if (dinp.data != nullptr) {
    PERIGEE_CHECK(convert_to_bf16(w16, weight, n_w, stream));
    // dinp^T [C, N] = weight^T [C, OC] (col-major view of weight) . dout^T [OC, N].
    PERIGEE_CHECK(lt.gemm(false, false, C, N, OC, w16, C, dout16, OC, 0.0f, dinp, C, nullptr, stream));
  }
  if (dweight != nullptr) {
    const __nv_bfloat16* inp16 = inp.is_f32() ? inp_copy : as_bf16(inp);
    if (inp.is_f32()) PERIGEE_CHECK(convert_to_bf16(inp_copy, inp.f32(), n_inp, stream));
    // dweight^T [C, OC] += inp^T [C, N] . dout [N, OC] (dout^T in col-major, transposed back).
    PERIGEE_CHECK(lt.gemm(false, true, C, OC, N, inp16, C, dout16, OC, 1.0f, dweight, C, nullptr, stream));
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
