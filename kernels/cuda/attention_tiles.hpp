// Tile choice of the fp32 attention kernels (kernels/cuda/attention.cu): rows per tile and the dynamic
// shared memory each kernel asks for; and what the bf16 kernels ask for. Host-only arithmetic, so tests check
// the choice without a device. The 64-row tiles of a head width of 64 or 128 need more shared memory per
// block than sm_86/89 (99 KiB) or, for the backward at 128, sm_80 (163 KiB) allow; those passes then run with
// 32-row tiles (half the shared memory of the [R][D] operand tiles, a quarter of the [R][R] score tiles),
// which every device from sm_80 on can hold.
#pragma once

#include <algorithm>
#include <cstddef>

namespace perigee::kernels::cuda {

enum class AttentionPass { kForward, kBackward };

inline constexpr int kAttentionFp32Lanes = 16;  // threads sharing one group of 4 rows

// Compiled head width of a head size (<= 128): 32, 64 or 128; hs is padded with zeros up to it.
constexpr int attention_fp32_width(int head_size) {
  return head_size <= 32 ? 32 : (head_size <= 64 ? 64 : 128);
}

// Floats of one [R][D] operand tile (rows padded by 4 floats) and of one [R][R] score tile.
constexpr size_t attention_fp32_tile_floats(int D, int R) {
  return static_cast<size_t>(R) * (D + 4);
}
constexpr size_t attention_fp32_score_floats(int R) {
  return static_cast<size_t>(R) * (R + 4);
}

// Dynamic shared memory of each kernel: forward q, k, v tiles and P; backward pass 1 q, dO, k, v and dS;
// pass 2 k, v, q, dO, P, dS and the lse and D rows of a query tile.
constexpr size_t attention_fp32_forward_bytes(int D, int R) {
  return (3 * attention_fp32_tile_floats(D, R) + attention_fp32_score_floats(R)) * sizeof(float);
}
constexpr size_t attention_fp32_dq_bytes(int D, int R) {
  return (4 * attention_fp32_tile_floats(D, R) + attention_fp32_score_floats(R)) * sizeof(float);
}
constexpr size_t attention_fp32_dkv_bytes(int D, int R) {
  return (4 * attention_fp32_tile_floats(D, R) + 2 * attention_fp32_score_floats(R) +
          2 * static_cast<size_t>(R)) *
         sizeof(float);
}

// The most shared memory one launch of a pass asks for (the backward's two kernels use the same rows).
constexpr size_t attention_fp32_pass_bytes(AttentionPass pass, int D, int R) {
  return pass == AttentionPass::kForward
             ? attention_fp32_forward_bytes(D, R)
             : std::max(attention_fp32_dq_bytes(D, R), attention_fp32_dkv_bytes(D, R));
}

// Rows per tile of a pass on a device allowing `shared_limit` bytes per block: 64 where the pass fits,
// else 32 where it fits, else 0 (the pass cannot run on that device).
constexpr int attention_fp32_rows(AttentionPass pass, int head_size, size_t shared_limit) {
  const int D = attention_fp32_width(head_size);
  for (int R : {64, 32}) {
    if (attention_fp32_pass_bytes(pass, D, R) <= shared_limit) return R;
  }
  return 0;
}

// Dynamic shared memory per block of the bf16 tensor-core attention (attention_bf16.cu) for a head size
// (<= 128): the most any of its kernels asks for. Where the device allows less, the bf16 precision runs the
// fp32 kernels above for attention (sm_86/89 at head sizes above 64).
size_t attention_bf16_shared_bytes(int head_size);

}  // namespace perigee::kernels::cuda
