// GELU (tanh approximation), fp32 arithmetic, fp32 or bf16 storage of every tensor (see gelu.cuh).
#include "kernels/cuda/gelu.cuh"

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/gelu_math.hpp"

namespace perigee::kernels::cuda {
namespace {

constexpr int kBlock = 256;

struct DeviceExp {
  __device__ float operator()(float x) const { return expf(x); }
};

// ---- CUDA kernels (the element math: kernels/gelu_math.hpp)

template <typename Out, typename In>
__global__ void gelu_forward_kernel(Out* out, const In* inp, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    store_act(out, i, gelu_value(load_act(inp, i), DeviceExp{}));
  }
}

template <typename Out, typename In, typename Dout>
__global__ void gelu_backward_kernel(Out* dinp, const In* inp, const Dout* dout, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    store_act(dinp, i, gelu_derivative(load_act(inp, i), DeviceExp{}) * load_act(dout, i));
  }
}

// Calls f with the typed pointer of a tensor: float* for fp32 storage, uint16_t* for bf16.
template <typename F>
Status with_type(Act a, F&& f) {
  return a.is_f32() ? f(a.f32()) : f(a.bf16());
}
template <typename F>
Status with_type(ConstAct a, F&& f) {
  return a.is_f32() ? f(a.f32()) : f(a.bf16());
}

}  // namespace

// ---- kernel launchers

Status gelu_forward(Act out, ConstAct inp, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_forward", {out.data, inp.data}));
  return with_type(out, [&](auto* o) {
    return with_type(inp, [&](const auto* i) {
      gelu_forward_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(o, i, n);
      PERIGEE_CHECK_CUDA(cudaGetLastError());
      return Status::ok();
    });
  });
}

Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_backward", {dinp.data, inp.data, dout.data}));
  return with_type(dinp, [&](auto* di) {
    return with_type(inp, [&](const auto* i) {
      return with_type(dout, [&](const auto* d) {
        gelu_backward_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(di, i, d, n);
        PERIGEE_CHECK_CUDA(cudaGetLastError());
        return Status::ok();
      });
    });
  });
}

}  // namespace perigee::kernels::cuda
