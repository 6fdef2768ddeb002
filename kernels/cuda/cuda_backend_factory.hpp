// Plain C++ entry point to the CUDA backend (no CUDA headers): host code and tests compiled by the C++
// compiler create a CudaBackend through it and use it as a kernels::Backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/kernel_variants.hpp"

namespace perigee::kernels::cuda {

// The arithmetic of the CUDA backend's GEMMs and attention. Memory stays fp32 in every mode (weights,
// gradients, optimizer state and the activations the ops exchange); the modes differ in what the
// tensor cores are fed:
//   kFp32  fp32 everywhere (cuBLAS CUDA-core GEMMs, fp32 attention): closest to the CPU backend.
//   kTf32  GEMMs on TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation), fp32 attention.
//   kBf16  mixed precision: GEMM and attention operands rounded to bf16 (8-bit mantissa) on the way
//          into bf16 tensor cores (cuBLASLt, our attention kernel), fp32 accumulation and outputs.
enum class GpuPrecision { kFp32, kTf32, kBf16 };

const char* gpu_precision_name(GpuPrecision precision);
// What a run log says of the precision, e.g. "fp32 memory, TF32 GEMMs".
const char* gpu_precision_description(GpuPrecision precision);
// "fp32" | "tf32" | "bf16"; kInvalidArgument naming the accepted values otherwise.
Status parse_gpu_precision(const std::string& name, GpuPrecision* out);

// A CudaBackend on CUDA device `device`. kUnavailable when there is no usable CUDA driver or device,
// kInvalidArgument when `device` is out of range; other failures (stream, cuBLAS) as their own codes.
Status make_cuda_backend(int device, std::unique_ptr<Backend>* out,
                         GpuPrecision precision = GpuPrecision::kFp32);

// The CUDA stream (a cudaStream_t, non-blocking) on which `backend` (a CudaBackend) queues all its work:
// collectives over its buffers order themselves after that stream (NcclCommunicator's producer
// stream, collectives/cuda_staging.hpp). kInvalidArgument for any other backend.
Status cuda_stream_of(Backend& backend, void** stream);

// Whether `backend` (a CudaBackend in bf16 precision) writes a bf16 matmul_forward output [N, OC]
// straight from cuBLASLt (with or without the fp32 bias), rather than rounding an fp32 result
// (kernels/cuda/matmul_bf16.cuh). kInvalidArgument for any other backend.
Status writes_bf16_gemm_outputs(Backend& backend, int N, int C, int OC, bool bias, bool* yes);
// The same for matmul_backward's input gradient dinp [N, C] from dout [N, OC].
Status writes_bf16_input_gradients(Backend& backend, int N, int C, int OC, bool* yes);

// Turns GELU epilogues on or off for `backend` (a CudaBackend; kInvalidArgument otherwise): with bf16
// precision, matmul_gelu_forward and matmul_backward_gelu then run as one cuBLASLt GEMM each where
// cuBLASLt has the algorithm ([device] gelu_fusion, kernels/cuda/matmul_bf16.cuh).
Status set_gelu_fusion(Backend& backend, bool on);
// Whether a CudaBackend in bf16 precision has the fused algorithms for matmul_gelu_forward [N, C] ->
// [N, OC] with a bias (*forward) and for matmul_backward_gelu's dpre [N, C] from dout [N, OC]
// (*backward), for `type` storage. kInvalidArgument for any other backend.
Status fuses_gelu_gemms(Backend& backend, int N, int C, int OC, DType type, bool* forward, bool* backward);

// Which variants of the bf16 attention `backend` (a CudaBackend; kInvalidArgument otherwise) runs from its
// next op (KernelVariants, kernel_variants.hpp: none by default). Tests and bench_kernels
// run each beside the default kernels.
Status set_kernel_variants(Backend& backend, const KernelVariants& variant);
// The launches of `backend` (a CudaBackend; kInvalidArgument otherwise) that took each variant's path so
// far: tests compare it around an op to see that the variant they check really ran.
Status kernel_variant_runs(Backend& backend, KernelVariantRuns* out);

// Turns the bf16 weight cache on (the default) or off for `backend` (a CudaBackend; kInvalidArgument
// otherwise; [device] weight_cache): with bf16 precision, refresh_weight_cache() then rounds the
// parameters once into a bf16 copy (2 bytes per parameter) that the bf16 GEMMs read their weights
// from; off, every bf16 GEMM rounds its weight into scratch first. Same bits either way.
Status set_weight_cache(Backend& backend, bool on);
// What the weight cache did (a CudaBackend; kInvalidArgument otherwise): refreshes that converted,
// GEMM weights read from it, and its current size in bytes (0 when off or released).
struct WeightCacheStats {
  uint64_t refreshes = 0, hits = 0;
  size_t bytes = 0;
};
Status weight_cache_stats(Backend& backend, WeightCacheStats* out);

// How many Act op calls (kernels/backend.hpp) `backend` (a CudaBackend; kInvalidArgument otherwise)
// ran through the ActCast path (widen to fp32, fp32 op, round: kernels/act_ops.hpp) rather than a
// native kernel for their storage types. Tests compare it around an op to see which path ran.
Status act_cast_fallbacks(Backend& backend, uint64_t* out);

// The shared memory per block that `backend` (a CudaBackend; kInvalidArgument otherwise) lets its
// attention kernels choose by, for tests: at most the device's opt-in limit; 0 restores that limit. At
// 101376 (99 KiB) an H100 takes the sm_86/89 paths: 32-row fp32 tiles where 64 do not fit, and the fp32
// kernels for bf16 attention at head sizes above 64.
Status set_shared_memory_limit(Backend& backend, size_t bytes);

// The scratch buffer of `backend` (a CudaBackend; kInvalidArgument otherwise): its size now and the most
// any op has asked of it, and the size of the ActCast path's temporaries. Tests check that a model's
// reservation (Backend::reserve_working_memory) covers every request, so that no step grows either.
struct ScratchUse {
  size_t capacity = 0, largest_request = 0, cast_capacity = 0;
};
Status scratch_use(Backend& backend, ScratchUse* out);

// Launches of `backend`'s cuBLASLt GEMMs (a CudaBackend; kInvalidArgument otherwise): all, those
// writing a bf16 D, those with the GELU_AUX_BIAS or DGELU epilogue, launches cuBLASLt refused, and
// fp32-D calls whose bias was added in a pass of its own (no bias epilogue for their operands).
// Tests compare them around an op to see whether it ran fused.
struct LtLaunchCounts {
  uint64_t launches = 0, bf16_d = 0, gelu_aux = 0, dgelu = 0, refused_at_launch = 0, bias_apart = 0;
};
Status lt_launch_counts(Backend& backend, LtLaunchCounts* out);
// Off: every fp32-D cuBLASLt GEMM with a bias adds it in a pass of its own, the path taken where the
// bias epilogue has no algorithm (tests prove that path with it; on by default).
Status set_lt_bias_epilogue(Backend& backend, bool on);

}  // namespace perigee::kernels::cuda
