// Kernel variants written while no GPU was available: each gives the bits of the default kernel it
// replaces (tests compare them bit for bit on a device; the one-pass backward's dQ within tolerance) and
// stays off until it has passed there and been timed faster (bench_kernels runs each beside the default;
// bench_train_step --kernel-variant and scripts/device/run_gpu_bench.sh time a whole step with them).
// Then it becomes the default and its flag goes. Plain C++, so host code and tests compiled by the C++
// compiler can set them.
#pragma once

#include <cstdint>

namespace perigee::kernels::cuda {

struct KernelVariants {
  // bf16 attention backward (attention_bf16.cu): the tiles of a bf16 qkv (16-byte aligned) are read where
  // they lie, instead of first copying q, k and v into head-major planes (dout is still converted): 12 of
  // the 18 bytes per element of that copy pass, and three quarters of its scratch, saved.
  bool attention_in_place_backward = false;
  // bf16 attention forward of a bf16 qkv (16-byte aligned) at head sizes up to 64: two groups of 16 query
  // rows per warp with their Q fragments in registers, so each K and V fragment read from shared memory
  // feeds two mma instead of one, and the tiles stream from qkv with cp.async instead of through registers.
  bool attention_wide_forward = false;
  // bf16 attention backward at head sizes up to 64 (attention_bf16_one_pass.cu): one kernel per key block
  // adds dK, dV and, in a fixed order through per-tile counters, each query tile's dQ partial: 5 tensor-core
  // products per pair of tiles instead of the two passes' 7. dK and dV keep the default's bits; dQ is
  // summed in another order (within tolerance of it, and the same bits from run to run). Composes with
  // attention_in_place_backward.
  bool attention_one_pass_backward = false;
  // Fused softmax + cross-entropy forward/backward (crossentropy.cu): the first pass keeps a row of
  // logits in shared memory (where two rows fit, so that two blocks share an SM: 98 KiB of bf16 logits
  // at GPT-2's vocabulary on an H100, not fp32) and the second reads it from there: one read of the
  // logits instead of two (about 1.65 of 4.95 GB per step at GPT-2 B 16 with bf16 logits in place).
  bool crossentropy_staged = false;
};

// Launches that took each variant's path (tests check that a variant they compare really ran), and the
// fp32 attention passes (forward or backward, attention.cu) launched, with those among them that ran 32-row
// tiles because the shared memory a block may have is too small for 64 (not a variant: the path of sm_80
// and sm_86/89 at the larger head sizes, which tests reach on an H100 by lowering the backend's limit).
struct KernelVariantRuns {
  uint64_t attention_in_place_backward = 0, attention_wide_forward = 0, crossentropy_staged = 0;
  uint64_t attention_one_pass_backward = 0;
  uint64_t attention_fp32_passes = 0, attention_fp32_32_row_passes = 0;
};

}  // namespace perigee::kernels::cuda
