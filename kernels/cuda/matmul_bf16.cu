// Linear layer on bf16 tensor cores: fp32 -> bf16 conversion, cuBLASLt plans per shape (see
// matmul_bf16.cuh).
#include "kernels/cuda/matmul_bf16.cuh"

#include <cstdint>
#include <utility>

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

cublasLtEpilogue_t lt_epilogue(LtEpilogue kind, bool bias) {
  switch (kind) {
    case LtEpilogue::kGeluAux:
      return bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    case LtEpilogue::kDGelu:
      return CUBLASLT_EPILOGUE_DGELU;
    case LtEpilogue::kNone:
      break;
  }
  return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
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
  const auto [trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, accumulate, d_bf16, epilogue_kind, align_a,
              align_b, align_d, align_bias, align_aux] = key;
  auto plan = std::make_unique<Plan>();
  PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  PERIGEE_CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cublasLtEpilogue_t epilogue = lt_epilogue(epilogue_kind, bias);
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                        sizeof(epilogue)));
  }
  if (bias) {
    // cuBLASLt adds a bias of D's type: no algorithm takes an fp32 bias with a bf16 D (seen on an H100,
    // CUDA 13), so a bf16 D gets the bias rounded to bf16 (forward_gemm rounds it).
    const cudaDataType_t bias_type = d_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                        &bias_type, sizeof(bias_type)));
  }
  if (epilogue_kind != LtEpilogue::kNone) {
    // The aux matrix is D-shaped, of D's type (cuBLASLt's default aux type), with D's leading dimension,
    // which cuBLASLt wants divisible by 8 (else the op runs unfused).
    if (ldd % 8 != 0) {
      plans_.emplace(key, nullptr);
      *out = nullptr;
      return Status::ok();
    }
    const int64_t aux_ld = ldd;
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                        &aux_ld, sizeof(aux_ld)));
  }
  // The heuristic reads the bias and aux pointers' values (never what they point to) for their
  // alignment: stand-ins with each one's own alignment until gemm() sets the real ones.
  if (bias) {
    const void* stand_in = reinterpret_cast<const void*>(static_cast<uintptr_t>(align_bias));
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &stand_in, sizeof(stand_in)));
  }
  if (epilogue_kind != LtEpilogue::kNone) {
    const void* stand_in = reinterpret_cast<const void*>(static_cast<uintptr_t>(align_aux));
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                        &stand_in, sizeof(stand_in)));
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
  // Up to kLtCandidates answers, best first; the first usable one is kept (the same list on every call
  // and rank: deterministic).
  constexpr int kLtCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kLtCandidates] = {};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace, sizeof(workspace));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, int> minimum[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},  // C is D (in place)
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}};
  for (const auto& [which, bytes] : minimum) {
    const uint32_t value = static_cast<uint32_t>(bytes);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, which, &value, sizeof(value));
  }
  if (st == CUBLAS_STATUS_SUCCESS && d_bf16) {
    // No split-K partial sums kept in bf16 (in the output buffer or in workspace): one rounding each.
    const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                              sizeof(schemes));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref,
                                        kLtCandidates, results, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  const bool may_fall_back = d_bf16 || epilogue_kind != LtEpilogue::kNone || bias;
  // The first answer whose state is success; for a bf16 D, a bias or an epilogue, also checked against
  // these descriptors (bias type, epilogue) before any use, so that a combination cuBLASLt turns down
  // runs unfused instead of failing mid-op.
  const cublasLtMatmulHeuristicResult_t* chosen = nullptr;
  for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found && chosen == nullptr; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    if (may_fall_back) {
      cublasLtMatmulHeuristicResult_t checked{};
      if (cublasLtMatmulAlgoCheck(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, &results[i].algo,
                                  &checked) != CUBLAS_STATUS_SUCCESS) {
        continue;
      }
    }
    chosen = &results[i];
  }
  if (may_fall_back && chosen == nullptr) {
    // Callers round an fp32 result or run the epilogue's op instead; gemm() adds a bias apart.
    plans_.emplace(key, nullptr);
    *out = nullptr;
    return Status::ok();
  }
  PERIGEE_CHECK_CUBLAS(st);
  PERIGEE_REQUIRE(chosen != nullptr, StatusCode::kCublasError, "cuBLASLt has no bf16 algorithm for m=", m,
                  " n=", n, " k=", k, " (", trans_a ? "T" : "N", trans_b ? "T" : "N", ", bias ",
                  bias ? "yes" : "no", ", accumulate ", accumulate ? "yes" : "no", ")");
  plan->algo = chosen->algo;
  *out = plan.get();
  plans_.emplace(key, std::move(plan));
  return Status::ok();
}

int LtAlign::of(const void* p) {
  const uintptr_t bits = 256 | reinterpret_cast<uintptr_t>(p);
  return static_cast<int>(bits & (~bits + 1));  // the lowest set bit: at most 256
}

LtGemm::Key LtGemm::key_of(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd,
                           bool bias, bool accumulate, bool d_bf16, LtEpilogue epilogue,
                           const LtAlign& align) {
  // Alignments of absent operands do not split plans.
  const int align_bias = bias ? align.bias : 256;
  const int align_aux = epilogue != LtEpilogue::kNone ? align.aux : 256;
  return Key{trans_a,    trans_b, m,        n,       k,       lda,     ldb,        ldd,      bias,
             accumulate, d_bf16,  epilogue, align.a, align.b, align.d, align_bias, align_aux};
}

Status LtGemm::available(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd,
                         DType d_type, bool bias, LtEpilogue epilogue, const LtAlign& align, bool* yes) {
  const Plan* plan = nullptr;
  PERIGEE_CHECK(plan_for(
      key_of(trans_a, trans_b, m, n, k, lda, ldb, ldd, bias, false, d_type == DType::kBF16, epilogue, align),
      &plan));
  *yes = plan != nullptr;
  return Status::ok();
}

Status LtGemm::gemm(bool trans_a, bool trans_b, int m, int n, int k, const __nv_bfloat16* A, int lda,
                    const __nv_bfloat16* B, int ldb, float beta, Act D, int ldd, ConstAct bias,
                    cudaStream_t stream, LtAux aux) {
  const bool d_bf16 = !D.is_f32();
  PERIGEE_REQUIRE(bias.data == nullptr || bias.dtype == D.dtype, StatusCode::kInvalidArgument,
                  "LtGemm: the bias is ", dtype_name(bias.dtype), " but D is ", dtype_name(D.dtype),
                  " (cuBLASLt takes a bias of D's type)");
  PERIGEE_REQUIRE(!d_bf16 || beta == 0.0f, StatusCode::kInvalidArgument,
                  "LtGemm: a bf16 D is written, not accumulated (beta must be 0)");
  PERIGEE_REQUIRE(aux.kind == LtEpilogue::kNone || (aux.data != nullptr && beta == 0.0f),
                  StatusCode::kInvalidArgument, "LtGemm: a GELU epilogue needs its aux matrix and beta 0");
  PERIGEE_REQUIRE(aux.kind != LtEpilogue::kDGelu || bias.data == nullptr, StatusCode::kInvalidArgument,
                  "LtGemm: the DGELU epilogue takes no bias");
  PERIGEE_REQUIRE(aux.kind == LtEpilogue::kNone || aligned(aux.data, 16), StatusCode::kUnavailable,
                  "LtGemm: the aux matrix is not 16-byte aligned");
  const Plan* plan = nullptr;
  const LtAlign align{LtAlign::of(A), LtAlign::of(B), LtAlign::of(D.data), LtAlign::of(bias.data),
                      LtAlign::of(aux.data)};
  const Key key = key_of(trans_a, trans_b, m, n, k, lda, ldb, ldd, bias.data != nullptr, beta != 0.0f, d_bf16,
                         aux.kind, align);
  PERIGEE_CHECK(plan_for(key, &plan));
  // Where cuBLASLt has no fp32-D algorithm with the bias epilogue for these operands (a packed bias
  // below 16-byte alignment, say): the GEMM without it, then the bias in a pass of its own. With
  // beta 0 that is the same fp32 sum, acc + bias, rounded once.
  const bool bias_apart = bias.data != nullptr && !d_bf16 && aux.kind == LtEpilogue::kNone;
  if (bias_apart && (plan == nullptr || !bias_epilogue_)) {
    PERIGEE_CHECK(gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, D, ldd, nullptr, stream));
    PERIGEE_CHECK(matmul_add_bias(D.f32(), bias.f32(), n, m, ldd, stream));
    ++counts_.bias_apart;
    return Status::ok();
  }
  PERIGEE_REQUIRE(plan != nullptr, StatusCode::kUnavailable, "cuBLASLt has no algorithm writing ",
                  d_bf16 ? "bf16" : "fp32", aux.kind == LtEpilogue::kNone ? "" : " with a GELU epilogue",
                  " for m=", m, " n=", n, " k=", k);
  // The pointers are per call; the descriptor is this plan's own. Not thread-safe: one op at a time per
  // LtGemm (a backend's ops run from one thread), as the plan cache is also unguarded.
  if (bias.data != nullptr) {
    const void* bias_ptr = bias.data;
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias_ptr, sizeof(bias_ptr)));
  }
  if (aux.kind != LtEpilogue::kNone) {
    PERIGEE_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                        &aux.data, sizeof(aux.data)));
  }
  const float alpha = 1.0f;
  const cublasStatus_t st =
      cublasLtMatmul(handle_, plan->desc, &alpha, A, plan->a, B, plan->b, &beta, D.data, plan->d, D.data,
                     plan->d, &plan->algo, workspace_, kLtWorkspaceBytes, stream);
  if ((st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) &&
      (d_bf16 || aux.kind != LtEpilogue::kNone || bias_apart)) {
    // A combination that passed the plan-time checks and is refused at launch (nothing was written):
    // the plan is dropped, so this and every later call of its shape takes the unfused path (here at
    // once for a bias, added apart).
    plans_[key] = nullptr;
    ++counts_.refused_at_launch;
    if (bias_apart) return gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, D, ldd, bias, stream);
    return make_error(StatusCode::kUnavailable, "cuBLASLt refused to launch its ", d_bf16 ? "bf16" : "fp32",
                      "-D plan", aux.kind == LtEpilogue::kNone ? "" : " with a GELU epilogue", " for m=", m,
                      " n=", n, " k=", k, " (", cublasGetStatusString(st), ")");
  }
  PERIGEE_CHECK_CUBLAS(st);
  ++counts_.launches;
  counts_.bf16_d += d_bf16;
  counts_.gelu_aux += aux.kind == LtEpilogue::kGeluAux;
  counts_.dgelu += aux.kind == LtEpilogue::kDGelu;
  return Status::ok();
}

// ---- kernel launchers

namespace {

// The scratch a forward GEMM takes, in elements: bf16 copies of an fp32 inp, of the weight (unless
// cached) and of a bias added to a bf16 out (cuBLASLt's bias has D's type).
struct ForwardCopies {
  size_t inp = 0, weight = 0, bias = 0;
  ForwardCopies(int N, int C, int OC, DType inp_type, DType out_type, bool has_bias, bool weight_cached)
      : inp(inp_type == DType::kF32 ? static_cast<size_t>(N) * C : 0),
        weight(weight_cached ? 0 : static_cast<size_t>(OC) * C),
        bias(has_bias && out_type != DType::kF32 ? static_cast<size_t>(OC) : 0) {}
  size_t bytes() const {
    return scratch_bytes<__nv_bfloat16>(inp) + scratch_bytes<__nv_bfloat16>(weight) +
           scratch_bytes<__nv_bfloat16>(bias);
  }
};

// The backward GEMMs' scratch: only fp32 operands are copied (a bf16 dout or inp is used in place),
// the weight for dinp unless cached, and the bias gradient's double partials.
struct BackwardCopies {
  size_t dout = 0, weight = 0, inp = 0, partials = 0;
  BackwardCopies(int N, int C, int OC, DType dout_type, DType inp_type, bool dinp, bool dweight, bool dbias,
                 bool weight_cached)
      : dout((dinp || dweight) && dout_type == DType::kF32 ? static_cast<size_t>(N) * OC : 0),
        weight(dinp && !weight_cached ? static_cast<size_t>(OC) * C : 0),
        inp(dweight && inp_type == DType::kF32 ? static_cast<size_t>(N) * C : 0),
        partials(dbias ? matmul_bias_grad_partials(N, OC) : 0) {}
  size_t bytes() const {
    return scratch_bytes<__nv_bfloat16>(dout) + scratch_bytes<__nv_bfloat16>(weight) +
           scratch_bytes<__nv_bfloat16>(inp) + scratch_bytes<double>(partials);
  }
};

// The forward GEMM out^T [OC, N] = weight . inp^T + bias, with `aux`'s epilogue (a GELU one writes
// aux, of out's type). kUnavailable before any work when cuBLASLt cannot write it. weight16: weight
// already rounded (a weight cache), or null to round it into scratch here.
Status forward_gemm(const char* op, Act out, ConstAct inp, const float* weight, const __nv_bfloat16* weight16,
                    const float* bias, int N, int C, int OC, LtAux aux, LtGemm& lt, DeviceScratch& scratch,
                    cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers(op, {out.data, inp.data, weight}));
  PERIGEE_CHECK(check_dims(op, {N, C, OC}));
  // A bf16 out takes a bf16 bias (cuBLASLt's bias has D's type): rounded into scratch here.
  const bool round_bias = bias != nullptr && !out.is_f32();
  if (!out.is_f32() || aux.kind != LtEpilogue::kNone) {
    bool ok = false;
    // A weight (A), an fp32 inp (B) and a bias to round are copied into 256-byte aligned scratch; the
    // rest (a cached weight too) is used in place.
    const LtAlign align{weight16 != nullptr ? LtAlign::of(weight16) : 256,
                        inp.is_f32() ? 256 : LtAlign::of(inp.data), LtAlign::of(out.data),
                        round_bias ? 256 : LtAlign::of(bias), LtAlign::of(aux.data)};
    PERIGEE_CHECK(
        lt.available(true, false, OC, N, C, C, C, OC, out.dtype, bias != nullptr, aux.kind, align, &ok));
    PERIGEE_REQUIRE(ok && (aux.kind == LtEpilogue::kNone || aligned(aux.data, 16)), StatusCode::kUnavailable,
                    op, ": no cuBLASLt algorithm writes ", dtype_name(out.dtype),
                    aux.kind == LtEpilogue::kNone ? "" : " with the GELU epilogue", " for N=", N, " C=", C,
                    " OC=", OC);
  }
  const ForwardCopies copies(N, C, OC, inp.dtype, out.dtype, bias != nullptr, weight16 != nullptr);
  const size_t n_w = copies.weight, n_inp = copies.inp, n_bias = copies.bias;
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(copies.bytes(), stream, &base));
  ScratchCarver carve(base);
  ConstAct lt_bias = bias;
  if (round_bias) {
    __nv_bfloat16* copy = carve.take<__nv_bfloat16>(n_bias);
    PERIGEE_CHECK(convert_to_bf16(copy, bias, n_bias, stream));
    lt_bias = ConstAct(copy, DType::kBF16);
  }
  const __nv_bfloat16* inp16 = as_bf16(inp);
  if (inp.is_f32()) {
    __nv_bfloat16* copy = carve.take<__nv_bfloat16>(n_inp);
    PERIGEE_CHECK(convert_to_bf16(copy, inp.f32(), n_inp, stream));
    inp16 = copy;
  }
  const __nv_bfloat16* w16 = weight16;
  if (w16 == nullptr) {
    __nv_bfloat16* copy = carve.take<__nv_bfloat16>(n_w);
    PERIGEE_CHECK(convert_to_bf16(copy, weight, n_w, stream));
    w16 = copy;
  }
  // out^T [OC, N] = weight (stored col-major C x OC, transposed) . inp^T [C, N], + bias per row.
  PERIGEE_CHECK(lt.gemm(true, false, OC, N, C, w16, C, inp16, C, 0.0f, out, OC, lt_bias, stream, aux));
  return Status::ok();
}

// matmul_backward, with `aux`'s epilogue (none or DGELU) on the dinp GEMM; weight16 as in forward_gemm.
Status backward_gemms(const char* op, Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                      const float* weight, const __nv_bfloat16* weight16, int N, int C, int OC, LtAux aux,
                      LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers(op, {dout.data}));
  PERIGEE_CHECK(check_dims(op, {N, C, OC}));
  if (dinp.data != nullptr && (!dinp.is_f32() || aux.kind != LtEpilogue::kNone)) {
    bool ok = false;
    const LtAlign align{weight16 != nullptr ? LtAlign::of(weight16) : 256,
                        dout.is_f32() ? 256 : LtAlign::of(dout.data), LtAlign::of(dinp.data), 256,
                        LtAlign::of(aux.data)};
    PERIGEE_CHECK(lt.available(false, false, C, N, OC, C, OC, C, dinp.dtype, false, aux.kind, align, &ok));
    PERIGEE_REQUIRE(ok && (aux.kind == LtEpilogue::kNone || aligned(aux.data, 16)), StatusCode::kUnavailable,
                    op, ": no cuBLASLt algorithm writes a ", dtype_name(dinp.dtype), " dinp",
                    aux.kind == LtEpilogue::kNone ? "" : " with the DGELU epilogue", " for N=", N, " C=", C,
                    " OC=", OC);
  }
  if (dinp.data != nullptr) PERIGEE_CHECK(check_pointers(op, {weight}));
  if (dweight != nullptr) PERIGEE_CHECK(check_pointers(op, {inp.data}));
  const bool gemms = dinp.data != nullptr || dweight != nullptr;
  if (!gemms && dbias == nullptr) return Status::ok();
  if (!gemms && dout.is_f32()) return matmul_bias_grad(dbias, dout.f32(), N, OC, scratch, stream);
  const BackwardCopies copies(N, C, OC, dout.dtype, inp.dtype, dinp.data != nullptr, dweight != nullptr,
                              dbias != nullptr, weight16 != nullptr);
  const size_t n_dout = copies.dout, n_w = copies.weight, n_inp = copies.inp, n_partial = copies.partials;
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(copies.bytes(), stream, &base));
  ScratchCarver carve(base);
  __nv_bfloat16* dout_copy = carve.take<__nv_bfloat16>(n_dout);
  __nv_bfloat16* w_copy = carve.take<__nv_bfloat16>(n_w);
  __nv_bfloat16* inp_copy = carve.take<__nv_bfloat16>(n_inp);
  double* partial = carve.take<double>(n_partial);
  const __nv_bfloat16* dout16 = dout.is_f32() ? dout_copy : as_bf16(dout);
  if (dout.is_f32()) {
    // dout is read once: the bias gradient's partial column sums (fp32 values) and its bf16 copy.
    if (dbias != nullptr) {
      PERIGEE_CHECK(matmul_bias_grad_stage1(partial, dout_copy, dout.f32(), N, OC, stream));
    } else {
      PERIGEE_CHECK(convert_to_bf16(dout_copy, dout.f32(), n_dout, stream));
    }
  } else if (dbias != nullptr) {
    PERIGEE_CHECK(matmul_bias_grad_stage1(partial, dout.bf16(), N, OC, stream));
  }
  if (dinp.data != nullptr) {
    const __nv_bfloat16* w16 = weight16;
    if (w16 == nullptr) {
      PERIGEE_CHECK(convert_to_bf16(w_copy, weight, n_w, stream));
      w16 = w_copy;
    }
    // dinp^T [C, N] = weight^T [C, OC] (col-major view of weight) . dout^T [OC, N]. A launch cuBLASLt
    // refuses returns kUnavailable with nothing accumulated yet (dbias is added last), so the caller
    // can take the unfused path; the plan is dropped, so later calls take it before any work.
    PERIGEE_CHECK(lt.gemm(false, false, C, N, OC, w16, C, dout16, OC, 0.0f, dinp, C, nullptr, stream, aux));
  }
  if (dweight != nullptr) {
    const __nv_bfloat16* inp16 = inp.is_f32() ? inp_copy : as_bf16(inp);
    if (inp.is_f32()) PERIGEE_CHECK(convert_to_bf16(inp_copy, inp.f32(), n_inp, stream));
    // dweight^T [C, OC] += inp^T [C, N] . dout [N, OC] (dout^T in col-major, transposed back).
    PERIGEE_CHECK(lt.gemm(false, true, C, OC, N, inp16, C, dout16, OC, 1.0f, dweight, C, nullptr, stream));
  }
  // Last: a GEMM refused above has accumulated nothing, so the caller's fallback adds dbias once.
  if (dbias != nullptr) PERIGEE_CHECK(matmul_bias_grad_stage2(dbias, partial, N, OC, stream));
  return Status::ok();
}

}  // namespace

Status matmul_forward_bf16(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                           int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream,
                           const __nv_bfloat16* weight16) {
  return forward_gemm("matmul_forward", out, inp, weight, weight16, bias, N, C, OC, LtAux{}, lt, scratch,
                      stream);
}

Status matmul_backward_bf16(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                            const float* weight, int N, int C, int OC, LtGemm& lt, DeviceScratch& scratch,
                            cudaStream_t stream, const __nv_bfloat16* weight16) {
  return backward_gemms("matmul_backward", dinp, dweight, dbias, dout, inp, weight, weight16, N, C, OC,
                        LtAux{}, lt, scratch, stream);
}

Status matmul_gelu_forward_bf16(Act pre, Act out, ConstAct inp, const float* weight, const float* bias, int N,
                                int C, int OC, LtGemm& lt, DeviceScratch& scratch, cudaStream_t stream,
                                const __nv_bfloat16* weight16) {
  PERIGEE_CHECK(check_pointers("matmul_gelu_forward", {pre.data}));
  PERIGEE_REQUIRE(pre.dtype == out.dtype, StatusCode::kUnavailable,
                  "matmul_gelu_forward: the GELU epilogue writes pre and out in one type");
  return forward_gemm("matmul_gelu_forward", out, inp, weight, weight16, bias, N, C, OC,
                      LtAux{LtEpilogue::kGeluAux, pre.data}, lt, scratch, stream);
}

Status matmul_backward_gelu_bf16(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                 const float* weight, ConstAct pre, int N, int C, int OC, LtGemm& lt,
                                 DeviceScratch& scratch, cudaStream_t stream, const __nv_bfloat16* weight16) {
  PERIGEE_CHECK(check_pointers("matmul_backward_gelu", {dpre.data, pre.data}));
  PERIGEE_REQUIRE(pre.dtype == dpre.dtype, StatusCode::kUnavailable,
                  "matmul_backward_gelu: the DGELU epilogue reads pre in dpre's type");
  return backward_gemms("matmul_backward_gelu", dpre, dweight, dbias, dout, inp, weight, weight16, N, C, OC,
                        LtAux{LtEpilogue::kDGelu, pre.data}, lt, scratch, stream);
}

size_t matmul_forward_bf16_scratch_bytes(int N, int C, int OC, DType inp, DType out, bool bias,
                                         bool weight_cached) {
  return ForwardCopies(N, C, OC, inp, out, bias, weight_cached).bytes();
}

size_t matmul_backward_bf16_scratch_bytes(int N, int C, int OC, DType dout, DType inp, bool dinp,
                                          bool dweight, bool dbias, bool weight_cached) {
  // Only the bias gradient, from an fp32 dout: matmul_bias_grad's partials.
  if (!dinp && !dweight) return dbias ? scratch_bytes<double>(matmul_bias_grad_partials(N, OC)) : 0;
  return BackwardCopies(N, C, OC, dout, inp, dinp, dweight, dbias, weight_cached).bytes();
}

Status gelu_forward_fusable(LtGemm& lt, int N, int C, int OC, DType type, bool bias, bool* yes) {
  return lt.available(true, false, OC, N, C, C, C, OC, type, bias, LtEpilogue::kGeluAux, LtAlign{}, yes);
}

Status gelu_backward_fusable(LtGemm& lt, int N, int C, int OC, DType type, bool* yes) {
  return lt.available(false, false, C, N, OC, C, OC, C, type, false, LtEpilogue::kDGelu, LtAlign{}, yes);
}

}  // namespace perigee::kernels::cuda
