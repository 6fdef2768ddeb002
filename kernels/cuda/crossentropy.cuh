// Fused softmax + cross-entropy over the first V of Vp columns, fp32 storage with a double softmax
// denominator. logits/probs/dlogits [N, Vp], targets [N] and losses [N] on the device.
// Forward, one block per row, two passes (one read for the statistics: per-thread online max and
// sum, combined in a fixed order; then read and write): m = max, probs = exp(x - m) / sum(exp(x - m))
// (padded columns 0), losses[i] = log(sum) - (x_target - m), as the CPU backend computes it; float4
// columns when Vp % 4 == 0. probs may alias logits: every
// element is read and rewritten by the same thread, and x_target is read before any write.
// Backward writes (not accumulates) dlogits = dloss * (probs - onehot(target)), padded columns 0; may
// alias probs. A target outside [0, V) yields a NaN loss and no one-hot term (it is never dereferenced).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"
#include "kernels/cuda/kernel_variants.hpp"

namespace perigee::kernels::cuda {

Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                            int V, int Vp, cudaStream_t stream);

Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                             int V, int Vp, cudaStream_t stream);

// Forward and backward in one pass (the forward kernel storing dloss * (probs - onehot) instead of
// probs): the same losses and the same dlogits bits as the two calls; dlogits may alias logits.
// staged_shared_bytes > 0 (KernelVariants::crossentropy_staged): where two rows of logits (Vp * their
// element size, two blocks per SM) fit in that much shared memory and the columns go in quadruples, the
// first pass keeps the row there and the second reads it back instead of reading the logits again; the
// same bits. `runs`, when given, counts the launches that did.
Status crossentropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes = 0,
                                     KernelVariantRuns* runs = nullptr);
// The same with dlogits and/or logits stored as bf16 bits (kernels/act.hpp): bf16 logits are widened
// exactly on load, a bf16 dlogits holds each fp32 value above rounded once. dlogits may alias logits only
// when both have the same type (every element is read and rewritten by one thread).
Status crossentropy_forward_backward(float* losses, uint16_t* dlogits, const float* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes = 0,
                                     KernelVariantRuns* runs = nullptr);
Status crossentropy_forward_backward(float* losses, float* dlogits, const uint16_t* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes = 0,
                                     KernelVariantRuns* runs = nullptr);
Status crossentropy_forward_backward(float* losses, uint16_t* dlogits, const uint16_t* logits,
                                     const int32_t* targets, float dloss, int N, int V, int Vp,
                                     cudaStream_t stream, size_t staged_shared_bytes = 0,
                                     KernelVariantRuns* runs = nullptr);

}  // namespace perigee::kernels::cuda
