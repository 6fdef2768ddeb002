// Device building blocks of the bf16 flash attention (attention_bf16.cu and attention_bf16_wide.cu): tile
// constants, ldmatrix/mma.sync m16n8k16 wrappers, the 16x64 products on shared tiles, row stores,
// tile loads from fp32 or bf16 qkv into registers, cp.async tile copies, and the dK/dV walk's steps. Layouts
// and precision as the top of attention_bf16.cu says.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda::attention_bf16_tiles {

using bf16 = __nv_bfloat16;

constexpr int kTile = 64;       // rows of a tile of the other side
constexpr int kRows = 16;       // rows per warp (one mma high)
constexpr int kNT = kTile / 8;  // 16x8 accumulator tiles across a 64-wide product
constexpr int kMaxHeadSize = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// Warps per block (H100, GPT-2 124M shape: 8 forward warps beat 4 by 20%; 4 backward warps beat 8 by
// 15%, the backward kernels needing about 170-200 registers a thread).
constexpr int kFwdWarps = 8;
constexpr int kBwdWarps = 4;

template <int D>
__host__ __device__ constexpr int ld_of() {
  static_assert(D == 32 || D == 64 || D == 128, "compiled head widths are 32, 64 and 128");
  return D + 8;  // bf16 row stride of shared tiles (multiple of 16 bytes, rows 4 banks apart)
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// c += a b (16x16 bf16 A in four registers, 16x8 bf16 B in two, 16x8 fp32 C).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// acc[16][64] = A[16][D] * B[64][D]^T: A the warp's 16 rows of a shared tile, B 64 rows of another.
template <int D>
__device__ __forceinline__ void product_nt(float (&acc)[kNT][4], const bf16* A, const bf16* B, int lane) {
  constexpr int ld = ld_of<D>();
#pragma unroll
  for (int t = 0; t < kNT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
  const bf16* a_row = A + (lane % 16) * ld + (lane / 16) * 8;
  const bf16* b_row = B + ((lane % 8) + (lane / 16) * 8) * ld + ((lane / 8) % 2) * 8;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
    uint32_t a[4];
    ldsm_x4(a, a_row + kc * 16);
#pragma unroll
    for (int j = 0; j < kTile / 16; ++j) {
      uint32_t b[4];
      ldsm_x4(b, b_row + j * 16 * ld + kc * 16);
      mma16816(acc[2 * j], a, b[0], b[1]);
      mma16816(acc[2 * j + 1], a, b[2], b[3]);
    }
  }
}

// acc[16][D] += P[16][64] * X[64][D]: P an accumulator (rounded to bf16 here), X a shared tile.
template <int D>
__device__ __forceinline__ void product_pv(float (&acc)[D / 8][4], const float (&p)[kNT][4], const bf16* X,
                                           int lane) {
  constexpr int ld = ld_of<D>();
  const bf16* x_row = X + ((lane % 8) + ((lane / 8) % 2) * 8) * ld + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    const uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                           pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                           pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldsm_x4_trans(b, x_row + kk * 16 * ld + dp * 16);
      mma16816(acc[2 * dp], a, b[0], b[1]);
      mma16816(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// kM groups of 16 rows per warp (the wide forward): the A operands of a product held in registers, so
// that each B fragment read from shared memory feeds kM mma instead of one. `active[m]`: whether group m
// takes part (warp-uniform); an inactive group's accumulators are left as they were. Per group, the
// products, their order and their accumulation are those of product_nt and product_pv (the same bits).

// The A fragments of rows A[16 m + r][0, D) of a shared tile, for every k chunk.
template <int D, int kM>
__device__ __forceinline__ void load_row_frags(uint32_t (&a)[kM][D / 16][4], const bf16* A, int lane) {
  constexpr int ld = ld_of<D>();
#pragma unroll
  for (int m = 0; m < kM; ++m) {
    const bf16* a_row = A + (16 * m + lane % 16) * ld + (lane / 16) * 8;
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) ldsm_x4(a[m][kc], a_row + kc * 16);
  }
}

// acc[m][16][64] = rows(m)[16][D] * B[64][D]^T for each active group m (zeroed first).
template <int D, int kM>
__device__ __forceinline__ void product_nt_groups(float (&acc)[kM][kNT][4],
                                                  const uint32_t (&a)[kM][D / 16][4], const bf16* B,
                                                  const bool (&active)[kM], int lane) {
  constexpr int ld = ld_of<D>();
#pragma unroll
  for (int m = 0; m < kM; ++m) {
#pragma unroll
    for (int t = 0; t < kNT; ++t) acc[m][t][0] = acc[m][t][1] = acc[m][t][2] = acc[m][t][3] = 0.0f;
  }
  const bf16* b_row = B + ((lane % 8) + (lane / 16) * 8) * ld + ((lane / 8) % 2) * 8;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
    for (int j = 0; j < kTile / 16; ++j) {
      uint32_t b[4];
      ldsm_x4(b, b_row + j * 16 * ld + kc * 16);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if (!active[m]) continue;
        mma16816(acc[m][2 * j], a[m][kc], b[0], b[1]);
        mma16816(acc[m][2 * j + 1], a[m][kc], b[2], b[3]);
      }
    }
  }
}

// acc[m][16][D] += P[m][16][64] * X[64][D] for each active group m.
template <int D, int kM>
__device__ __forceinline__ void product_pv_groups(float (&acc)[kM][D / 8][4], const float (&p)[kM][kNT][4],
                                                  const bf16* X, const bool (&active)[kM], int lane) {
  constexpr int ld = ld_of<D>();
  const bf16* x_row = X + ((lane % 8) + ((lane / 8) % 2) * 8) * ld + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[kM][4];
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      a[m][0] = pack_bf16(p[m][2 * kk][0], p[m][2 * kk][1]);
      a[m][1] = pack_bf16(p[m][2 * kk][2], p[m][2 * kk][3]);
      a[m][2] = pack_bf16(p[m][2 * kk + 1][0], p[m][2 * kk + 1][1]);
      a[m][3] = pack_bf16(p[m][2 * kk + 1][2], p[m][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldsm_x4_trans(b, x_row + kk * 16 * ld + dp * 16);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if (!active[m]) continue;
        mma16816(acc[m][2 * dp], a[m], b[0], b[1]);
        mma16816(acc[m][2 * dp + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// dst[(row0 + r) * ld + d] (+)= acc[r][d] for the warp's rows < T and d < hs, fp32 or bf16 (rounded
// once). Each lane quad writes 8 consecutive elements: a whole 32-byte sector for fp32, half of one for
// bf16.
template <int D, bool kAccumulate, typename Dst>
__device__ __forceinline__ void store_rows(Dst* dst, int64_t ld, int row0, int T, int hs,
                                           const float (&acc)[D / 8][4], int lane) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + lane / 4 + 8 * half;
    if (row >= T) continue;
    Dst* p = dst + static_cast<int64_t>(row) * ld + (lane % 4) * 2;
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
      if (8 * t >= hs) break;
      for (int j = 0; j < 2; ++j) {
        const float a = acc[t][2 * half + j];
        store_act(p, 8 * t + j, kAccumulate ? load_act(p, 8 * t + j) + a : a);
      }
    }
  }
}

// Four consecutive elements of an fp32 or bf16 (uint16_t bits) row as four bf16 in two words. `vec`:
// p is aligned to the four elements' size (16 or 8 bytes).
__device__ __forceinline__ uint2 load_quad_bf16(const float* p, bool vec) {
  const float4 v = vec ? __ldg(reinterpret_cast<const float4*>(p))
                       : make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
  return make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
}
__device__ __forceinline__ uint2 load_quad_bf16(const uint16_t* p, bool vec) {
  if (vec) return __ldg(reinterpret_cast<const uint2*>(p));
  return make_uint2(static_cast<uint32_t>(__ldg(p)) | static_cast<uint32_t>(__ldg(p + 1)) << 16,
                    static_cast<uint32_t>(__ldg(p + 2)) | static_cast<uint32_t>(__ldg(p + 3)) << 16);
}

// Rows [row0, row0 + 64) x [0, D) of src (fp32 or bf16, row stride ld), zero past T and past hs, in
// registers: kQuads elements quadruples per thread of kThreads, fp32 ones kept as float4 until stored
// (a load in flight costs registers, not a conversion). `vec`: rows aligned to a quadruple's size.
template <int D, int kThreads, typename Src>
struct TileFetch {
  static constexpr int kQuads = kTile * D / 4 / kThreads;
  static constexpr bool kF32 = std::is_same_v<Src, float>;
  using Quad = std::conditional_t<kF32, float4, uint2>;
  Quad v[kQuads];
  __device__ __forceinline__ void fetch(const Src* src, int64_t ld, int row0, int T, int hs, bool vec) {
#pragma unroll
    for (int i = 0; i < kQuads; ++i) {
      const int idx = threadIdx.x + i * kThreads;
      const int row = row0 + idx / (D / 4);
      const int c = (idx % (D / 4)) * 4;
      v[i] = Quad{};
      if (row < T && c < hs) {
        const Src* p = src + static_cast<int64_t>(row) * ld + c;
        if constexpr (kF32) {
          v[i] = vec ? __ldg(reinterpret_cast<const float4*>(p))
                     : make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
        } else {
          v[i] = load_quad_bf16(p, vec);
        }
      }
    }
  }
  __device__ __forceinline__ void store(bf16* tile) const {
#pragma unroll
    for (int i = 0; i < kQuads; ++i) {
      const int idx = threadIdx.x + i * kThreads;
      uint2 packed;
      if constexpr (kF32) {
        packed = make_uint2(pack_bf16(v[i].x, v[i].y), pack_bf16(v[i].z, v[i].w));
      } else {
        packed = v[i];
      }
      *reinterpret_cast<uint2*>(tile + (idx / (D / 4)) * ld_of<D>() + (idx % (D / 4)) * 4) = packed;
    }
  }
};

// Asynchronous copy of `bytes` (<= size, the rest zero-filled) from global to shared memory.
template <int kSize>
__device__ __forceinline__ void copy_async(void* dst, const void* src, int bytes) {
  const uint32_t s = smem_u32(dst);
  if constexpr (kSize == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(src), "n"(kSize),
                 "r"(bytes));
  }
}
__device__ __forceinline__ void async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Where the rows of one bf16 operand (q, k, v or dout) lie for every (batch b, head h): row t of head h
// of batch b starts at base + b * batch_stride + h * head_stride + t * ld. A head-major plane
// [B][NH][T][hs] has (NH*T*hs, T*hs, hs); a bf16 qkv [B, T, 3C] read in place has (3*T*C, hs, 3C), its
// base at the q, k or v third. Every row start is 16-byte aligned (the cp.async copies need it).
struct HeadRows {
  const bf16* base;
  int64_t batch_stride, head_stride, ld;
  __device__ __forceinline__ const bf16* head(int b, int h) const {
    return base + b * batch_stride + h * head_stride;
  }
};

// The backward's bf16 operands: head-major planes made by the backward's conversion kernel, or for a bf16
// qkv its own rows (q, k, v in place; dout still a plane).
struct BackwardRows {
  HeadRows q, k, v, dout;
};

// tile[r][d] = src[(row0 + r) * ld + d] for r < rows (src: row 0 of a head, rows `ld` elements apart),
// zero past T and past hs.
template <int D, int kThreads>
__device__ __forceinline__ void load_tile_async(bf16* tile, const bf16* src, int64_t ld, int rows, int row0,
                                                int T, int hs) {
  constexpr int kChunks = D / 8;  // 16-byte pieces of a row
  for (int idx = threadIdx.x; idx < rows * kChunks; idx += kThreads) {
    const int r = idx / kChunks;
    const int c = (idx % kChunks) * 8;
    const bool in = row0 + r < T && c < hs;
    copy_async<16>(tile + r * ld_of<D>() + c, in ? src + static_cast<int64_t>(row0 + r) * ld + c : src,
                   in ? 16 : 0);
  }
}

// ---- the dK/dV walk (attention_backward_dkv_bf16_kernel and the one-pass kernel): one code, so the two
// give dK and dV the same bits

// Query tile q0 into stage `stage` of the walk's buffers, asynchronously: the Q and dO tiles (qd_s holds
// [Q 0, Q 1, dO 0, dO 1], [64][ld] each) and the tile's lse and D rows (stat_s holds [lse 0, lse 1, D 0,
// D 1], 64 floats each; zero past T). Commits the copies as one group.
template <int D, int kThreads>
__device__ __forceinline__ void prefetch_query_tile(bf16* qd_s, float* stat_s, int stage,
                                                    const BackwardRows& src, const bf16* q_g,
                                                    const bf16* do_g, const float* lse_g, const float* d_g,
                                                    int q0, int T, int hs) {
  constexpr int kTileElems = kTile * ld_of<D>();
  load_tile_async<D, kThreads>(qd_s + stage * kTileElems, q_g, src.q.ld, kTile, q0, T, hs);
  load_tile_async<D, kThreads>(qd_s + (2 + stage) * kTileElems, do_g, src.dout.ld, kTile, q0, T, hs);
  if (threadIdx.x < kTile) {
    const int i = q0 + threadIdx.x;
    copy_async<4>(stat_s + stage * kTile + threadIdx.x, i < T ? lse_g + i : lse_g, i < T ? 4 : 0);
    copy_async<4>(stat_s + (2 + stage) * kTile + threadIdx.x, i < T ? d_g + i : d_g, i < T ? 4 : 0);
  }
  async_commit();
}

// One query tile (rows q0 on, shared tiles q_s and do_s, lse and D rows lse_s and d_s) for the warp's 16
// keys from w0 (shared rows k_w and v_w): S^T and dP^T, then P (masked: query >= T or key > query) and
// dS^T = P (dP - D) scale in their place, dV += P^T dO and dK += dS^T Q. `ds` is left holding dS^T (key
// rows, query columns) in fp32.
template <int D>
__device__ __forceinline__ void dkv_tile_step(float (&dk)[D / 8][4], float (&dv)[D / 8][4],
                                              float (&ds)[kNT][4], const bf16* k_w, const bf16* v_w,
                                              const bf16* q_s, const bf16* do_s, const float* lse_s,
                                              const float* d_s, int q0, int w0, int T, float scale,
                                              int lane) {
  const float scale2 = scale * kLog2e;
  float s[kNT][4];  // S^T: key rows, query columns
  product_nt<D>(s, k_w, q_s, lane);
  product_nt<D>(ds, v_w, do_s, lane);  // dP^T, until it becomes dS^T below
#pragma unroll
  for (int t = 0; t < kNT; ++t) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int il = 8 * t + (lane % 4) * 2 + (i % 2);
      const int q = q0 + il;
      const float p =
          (q < T && w0 + lane / 4 + 8 * (i / 2) <= q) ? exp2f(s[t][i] * scale2 - lse_s[il] * kLog2e) : 0.0f;
      s[t][i] = p;
      ds[t][i] = p * (ds[t][i] - d_s[il]) * scale;
    }
  }
  product_pv<D>(dv, s, do_s, lane);
  product_pv<D>(dk, ds, q_s, lane);
}

}  // namespace perigee::kernels::cuda::attention_bf16_tiles
