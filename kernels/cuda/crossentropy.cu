// Fused softmax + cross-entropy forward and its backward, fp32, the fused gradient fp32 or bf16 (see
// crossentropy.cuh).
#include "kernels/cuda/crossentropy.cuh"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kForwardBlock = 512;
constexpr int kBackwardBlock = 256;

// ---- CUDA kernels

// The running (max, sum of exp(x - max)) of one thread's columns: one read of each logit. The sum is
// a double; a new maximum rescales it by exp(old - new) (rare after the first few columns). A masked
// logit (-inf) adds nothing: exp(-inf - m) is 0, and while m is still -inf it would be exp(NaN). A NaN
// logit still makes the sum NaN, as on the CPU.
struct OnlineSoftmax {
  float m = -INFINITY;
  double s = 0.0;
  __device__ __forceinline__ void add(float x) {
    if (x > m) {
      s = s * static_cast<double>(expf(m - x)) + 1.0;
      m = x;
    } else if (x != -INFINITY) {
      s += static_cast<double>(expf(x - m));
    }
  }
};

// What the second pass stores for column j < V: the probability, or (kGrad) the gradient of the loss
// scaled by dloss, as crossentropy_backward_kernel computes it from the stored probability (the
// product is rounded on its own, __fmul_rn, so it is not fused into the subtraction: same bits).
template <bool kGrad>
__device__ __forceinline__ float softmax_out(float x, float max_logit, float inv_sum, int j, int target,
                                             float dloss) {
  const float p = __fmul_rn(expf(x - max_logit), inv_sum);
  if constexpr (kGrad) return dloss * (p - (j == target ? 1.0f : 0.0f));
  return p;
}

// Four consecutive logits as stored (16 bytes of fp32 or 8 of bf16 bits), and widened to fp32 exactly as
// load_act4 widens them.
template <typename In>
using Raw4 = std::conditional_t<std::is_same_v<In, float>, float4, uint2>;
__device__ __forceinline__ float4 widen4(float4 r) {
  return r;
}
__device__ __forceinline__ float4 widen4(uint2 r) {
  auto w = [](uint32_t bits) { return __uint_as_float(bits); };  // bf16 in the high half: exact
  return make_float4(w(r.x << 16), w(r.x & 0xFFFF0000u), w(r.y << 16), w(r.y & 0xFFFF0000u));
}

// One block per row, two passes over it: (1) per-thread online max and sum, combined in a fixed order
// (block max, then each thread's sum rescaled to it, block sum); (2) probs = exp(x - max) / sum, or with
// kGrad dlogits = dloss * (probs - onehot) (into `probs`, stored as Out: fp32, or bf16 rounded once).
// The logits are In: fp32, or bf16 widened exactly on load. kVec: columns in quadruples (Vp % 4 == 0,
// logits and outputs aligned to 4 elements); thread t owns columns (or column quadruples)
// t + k * kForwardBlock in both passes, so `probs` may alias `logits` when Out is In.
// kStaged (with kVec; KernelVariants::crossentropy_staged): pass 1 also copies each quadruple it reads,
// as stored, into dynamic shared memory (Vp * sizeof(In) bytes), and pass 2 reads it back from there:
// one read of the logits from global memory instead of two, the same values in the same order, so the
// same bits.
template <bool kVec, bool kGrad, typename Out, typename In, bool kStaged = false>
__global__ void __launch_bounds__(kForwardBlock)
    crossentropy_forward_kernel(float* losses, Out* probs, const In* logits, const int32_t* targets, int V,
                                int Vp, float dloss) {
  static_assert(kVec || !kStaged, "the staged kernel copies quadruples");
  extern __shared__ __align__(16) unsigned char staged_row[];  // [Vp] In, kStaged only
  In* row_s = reinterpret_cast<In*>(staged_row);
  __shared__ float shared_max[kForwardBlock / kWarpSize];
  __shared__ double shared_sum[kForwardBlock / kWarpSize];
  const int64_t row = blockIdx.x;
  const In* x = logits + row * Vp;
  Out* p = probs + row * Vp;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  // Read before any thread writes p (the block reductions below synchronise the block).
  const float x_target = (threadIdx.x == 0 && valid) ? load_act(x, target) : 0.0f;

  OnlineSoftmax acc;
  if constexpr (kVec) {
    for (int q = threadIdx.x; 4 * q < V; q += kForwardBlock) {
      const int j = 4 * q;
      float4 v;
      if constexpr (kStaged) {
        const Raw4<In> r = *reinterpret_cast<const Raw4<In>*>(x + j);
        *reinterpret_cast<Raw4<In>*>(row_s + j) = r;
        v = widen4(r);
      } else {
        v = load_act4(x, j);
      }
      acc.add(v.x);
      if (j + 1 < V) acc.add(v.y);
      if (j + 2 < V) acc.add(v.z);
      if (j + 3 < V) acc.add(v.w);
    }
  } else {
    for (int j = threadIdx.x; j < V; j += kForwardBlock) acc.add(load_act(x, j));
  }
  const float max_logit = block_max<kForwardBlock>(acc.m, shared_max);
  const double mine = acc.s == 0.0 ? 0.0 : acc.s * static_cast<double>(expf(acc.m - max_logit));
  const double sum = block_sum<kForwardBlock>(mine, shared_sum);
  const float inv_sum = static_cast<float>(1.0 / sum);

  if constexpr (kVec) {
    for (int q = threadIdx.x; 4 * q < Vp; q += kForwardBlock) {
      const int j = 4 * q;
      // Staged: the quadruples pass 1 copied (those with j < V; past V only zeros are stored).
      const float4 v = kStaged ? (j < V ? widen4(*reinterpret_cast<const Raw4<In>*>(row_s + j)) : float4{})
                               : load_act4(x, j);
      float4 out;
      out.x = j < V ? softmax_out<kGrad>(v.x, max_logit, inv_sum, j, target, dloss) : 0.0f;
      out.y = j + 1 < V ? softmax_out<kGrad>(v.y, max_logit, inv_sum, j + 1, target, dloss) : 0.0f;
      out.z = j + 2 < V ? softmax_out<kGrad>(v.z, max_logit, inv_sum, j + 2, target, dloss) : 0.0f;
      out.w = j + 3 < V ? softmax_out<kGrad>(v.w, max_logit, inv_sum, j + 3, target, dloss) : 0.0f;
      store_act4(p, j, out);
    }
  } else {
    for (int j = threadIdx.x; j < Vp; j += kForwardBlock)
      store_act(p, j,
                j < V ? softmax_out<kGrad>(load_act(x, j), max_logit, inv_sum, j, target, dloss) : 0.0f);
  }
  if (threadIdx.x == 0) {
    losses[row] = valid ? static_cast<float>(log(sum) - static_cast<double>(x_target - max_logit)) : NAN;
  }
}

// One block per row: d_j = dloss * (p_j - [j == target]) for j < V, 0 for the padding.
__global__ void crossentropy_backward_kernel(float* dlogits, const float* probs, const int32_t* targets,
                                             float dloss, int V, int Vp) {
  const int64_t row = blockIdx.x;
  const float* p = probs + row * Vp;
  float* d = dlogits + row * Vp;
  const int32_t target = targets[row];
  for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
    d[j] = j < V ? dloss * (p[j] - (j == target ? 1.0f : 0.0f)) : 0.0f;
  }
}

Status check_shape(const char* op, int N, int V, int Vp) {
  PERIGEE_CHECK(check_dims(op, {N, V, Vp}));
  PERIGEE_REQUIRE(Vp >= V, StatusCode::kInvalidArgument, op, ": Vp = ", Vp, " is smaller than V = ", V);
  return Status::ok();
}

template <bool kGrad, typename Out, typename In>
Status launch_forward(float* losses, Out* out, const In* logits, const int32_t* targets, float dloss, int N,
                      int V, int Vp, cudaStream_t stream, size_t staged_shared_bytes = 0,
                      KernelVariantRuns* runs = nullptr) {
  const bool vec = Vp % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % (4 * sizeof(In)) == 0 &&
                   reinterpret_cast<uintptr_t>(out) % (4 * sizeof(Out)) == 0;
  const size_t row_bytes = static_cast<size_t>(Vp) * sizeof(In);
  // Staged where two blocks fit in the shared memory a block may have (about what an SM has): one block of
  // 512 threads per SM is too few to keep the memory busy. 1 KiB: what the runtime keeps per block.
  constexpr size_t kStaticBytes = kForwardBlock / kWarpSize * (sizeof(float) + sizeof(double));
  if (vec && 2 * (row_bytes + kStaticBytes + 1024) <= staged_shared_bytes) {
    if (runs != nullptr) ++runs->crossentropy_staged;
    const auto kernel = crossentropy_forward_kernel<true, kGrad, Out, In, true>;
    PERIGEE_CHECK(allow_shared_memory(kernel, row_bytes));
    kernel<<<N, kForwardBlock, row_bytes, stream>>>(losses, out, logits, targets, V, Vp, dloss);
  } else if (vec) {
    crossentropy_forward_kernel<true, kGrad, Out, In>
        <<<N, kForwardBlock, 0, stream>>>(losses, out, logits, targets, V, Vp, dloss);
  } else {
    crossentropy_forward_kernel<false, kGrad, Out, In>
        <<<N, kForwardBlock, 0, stream>>>(losses, out, logits, targets, V, Vp, dloss);
  }
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out, typename In>
Status forward_backward(float* losses, Out* dlogits, const In* logits, const int32_t* targets, float dloss,
                        int N, int V, int Vp, cudaStream_t stream, size_t staged_shared_bytes,
                        KernelVariantRuns* runs) {
  PERIGEE_CHECK(check_pointers("crossentropy_forward_backward", {losses, dlogits, logits, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward_backward", N, V, Vp));
  return launch_forward<true>(losses, dlogits, logits, targets, dloss, N, V, Vp, stream, staged_shared_bytes,
                              runs);
}

}  // namespace

// ---- kernel launchers

Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                            int V, int Vp, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("crossentropy_forward", {losses, probs, logits, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward", N, V, Vp));
  return launch_forward<false>(losses, probs, logits, targets, 1.0f, N, V, Vp, stream);
}

Status crossentropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes,
                                     KernelVariantRuns* runs) {
  return forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp, stream, staged_shared_bytes,
                          runs);
}

Status crossentropy_forward_backward(float* losses, uint16_t* dlogits, const float* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes,
                                     KernelVariantRuns* runs) {
  return forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp, stream, staged_shared_bytes,
                          runs);
}

Status crossentropy_forward_backward(float* losses, float* dlogits, const uint16_t* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes,
                                     KernelVariantRuns* runs) {
  return forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp, stream, staged_shared_bytes,
                          runs);
}

Status crossentropy_forward_backward(float* losses, uint16_t* dlogits, const uint16_t* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes,
                                     KernelVariantRuns* runs) {
  return forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp, stream, staged_shared_bytes,
                          runs);
}

Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                             int V, int Vp, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("crossentropy_backward", {dlogits, probs, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_backward", N, V, Vp));
  crossentropy_backward_kernel<<<N, kBackwardBlock, 0, stream>>>(dlogits, probs, targets, dloss, V, Vp);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
