// Fused softmax + cross-entropy forward and its backward, fp32 (see crossentropy.cuh).
#include "kernels/cuda/crossentropy.cuh"

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kForwardBlock = 512;
constexpr int kBackwardBlock = 256;

// ---- CUDA kernels

// One block per row. Each thread owns columns threadIdx.x + k * kForwardBlock in every pass.
__global__ void __launch_bounds__(kForwardBlock)
    crossentropy_forward_kernel(float* losses, float* probs, const float* logits, const int32_t* targets,
                                int V, int Vp) {
  __shared__ float shared_max[kForwardBlock / kWarpSize];
  __shared__ double shared_sum[kForwardBlock / kWarpSize];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * Vp;
  float* p = probs + row * Vp;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  // Read before any thread writes p (the block_max below synchronises the block).
  const float x_target = (threadIdx.x == 0 && valid) ? x[target] : 0.0f;

  float thread_max = -INFINITY;
  for (int j = threadIdx.x; j < V; j += kForwardBlock) thread_max = fmaxf(thread_max, x[j]);
  const float max_logit = block_max<kForwardBlock>(thread_max, shared_max);

  double thread_sum = 0.0;
  for (int j = threadIdx.x; j < V; j += kForwardBlock) {
    const float e = expf(x[j] - max_logit);
    p[j] = e;
    thread_sum += static_cast<double>(e);
  }
  const double sum = block_sum<kForwardBlock>(thread_sum, shared_sum);
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int j = threadIdx.x; j < V; j += kForwardBlock) p[j] *= inv_sum;
  for (int j = V + threadIdx.x; j < Vp; j += kForwardBlock) p[j] = 0.0f;
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

}  // namespace

// ---- kernel launchers

Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                            int V, int Vp, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("crossentropy_forward", {losses, probs, logits, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward", N, V, Vp));
  crossentropy_forward_kernel<<<N, kForwardBlock, 0, stream>>>(losses, probs, logits, targets, V, Vp);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
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
