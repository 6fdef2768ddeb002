// The one-pass bf16 attention backward (KernelVariants::attention_one_pass_backward; see
// attention_bf16_one_pass.cuh). Layout, precision and fragment layouts as the top of attention_bf16.cu
// says; the dK/dV arithmetic is that of attention_backward_dkv_bf16_kernel, step for step.
// Per query tile a block of 4 warps (16 keys each):
//   S^T, dP^T (two products, key rows), P and dS^T in registers, dV += P^T dO and dK += dS^T Q (two more);
//   dS^T goes to shared memory as bf16 (the operand dK just used), and each warp computes the dQ partial of
//   16 query rows, dS K (the fifth product), reading dS through ldmatrix.trans;
//   the partial is added to the tile's fp32 accumulator once the key block after this one has added its
//   own (a counter per query tile, acquire/release at GPU scope), or written to dqkv by key block 0.
// The accumulator is B*T*C floats (50 MB at GPT-2 124M, B 16), and the blocks of one head run together
// (the key blocks are the grid's x), so the accumulator lines in use stay in L2.
#include "kernels/cuda/attention_bf16_one_pass.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

using namespace attention_bf16_tiles;  // constants, mma and tile helpers (attention_bf16_tiles.cuh)

constexpr int kOnePassWarps = 4;    // 64 keys a block: one tile, so a block's dQ partial is one tile
constexpr int kDsLd = ld_of<64>();  // bf16 row stride of the dS^T tile [64 keys][64 queries]
constexpr uint64_t kWaitLimitNs = 10000000000ull;  // 10 s: far past any honest wait

// ---- ordering between blocks

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release(int* p, int v) {
  asm volatile("st.release.gpu.global.s32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

// Spins (one thread) until *flag == want. A wait past kWaitLimitNs means the ordering broke (a block
// a bug): it traps, which the host sees as a CUDA error, instead of hanging.
__device__ void wait_for(const int* flag, int want, int key_block, int query_tile, int bh) {
  if (load_acquire(flag) == want) return;
  const uint64_t start = global_ns();
  while (load_acquire(flag) != want) {
    __nanosleep(100);
    if (global_ns() - start > kWaitLimitNs) {
      printf(
          "attention_backward_one_pass: key block %d waited over 10 s for query tile %d of head %d "
          "(counter %d, wanted %d)\n",
          key_block, query_tile, bh, load_acquire(flag), want);
      __trap();
    }
  }
}

// ---- tile pieces

// The warp's 16 rows of dS^T (an accumulator, key rows and query columns) into the shared tile as bf16,
// rounded as product_pv rounds its A operand (conflict-free: rows 36 words apart).
__device__ __forceinline__ void store_ds_rows(bf16* rows, const float (&x)[kNT][4], int lane) {
#pragma unroll
  for (int t = 0; t < kNT; ++t) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      bf16* p = rows + (lane / 4 + 8 * half) * kDsLd + 8 * t + (lane % 4) * 2;
      *reinterpret_cast<uint32_t*>(p) = pack_bf16(x[t][2 * half], x[t][2 * half + 1]);
    }
  }
}

// acc[16][D] = dS[16][64] * X[64][D]: dS rows q0_local..+16 read from the dS^T tile (keys x queries) as
// transposed A fragments, X the block's 64 keys (a shared tile).
template <int D>
__device__ __forceinline__ void product_ds_k(float (&acc)[D / 8][4], const bf16* ds_t, int q_local,
                                             const bf16* X, int lane) {
  constexpr int ld = ld_of<D>();
#pragma unroll
  for (int t = 0; t < D / 8; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
  // Matrix j of an A fragment holds rows (queries) 8 (j % 2) on and columns (keys) 8 (j / 2) on: stored
  // transposed, that is rows (keys) 8 (j / 2) + lane % 8 at column (query) 8 (j % 2).
  const bf16* a_row = ds_t + ((lane % 8) + (lane / 16) * 8) * kDsLd + q_local + ((lane / 8) % 2) * 8;
  const bf16* x_row = X + ((lane % 8) + ((lane / 8) % 2) * 8) * ld + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[4];
    ldsm_x4_trans(a, a_row + kk * 16 * kDsLd);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldsm_x4_trans(b, x_row + kk * 16 * ld + dp * 16);
      mma16816(acc[2 * dp], a, b[0], b[1]);
      mma16816(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// acc += src rows [row0, row0 + 16) (rows < T, columns < hs; row stride hs), read from L2 (__ldcg: another
// SM wrote them, and L1 is not coherent). a + b == b + a, so the sum is the fixed-order one.
template <int D>
__device__ __forceinline__ void add_partial(float (&acc)[D / 8][4], const float* src, int row0, int T, int hs,
                                            int lane) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + lane / 4 + 8 * half;
    if (row >= T) continue;
    const float* p = src + static_cast<int64_t>(row) * hs + (lane % 4) * 2;
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
      if (8 * t >= hs) break;
      const float2 v = __ldcg(reinterpret_cast<const float2*>(p + 8 * t));
      acc[t][2 * half] += v.x;
      acc[t][2 * half + 1] += v.y;
    }
  }
}

// dst rows [row0, row0 + 16) = acc (rows < T, columns < hs), written to L2 (__stcg).
template <int D>
__device__ __forceinline__ void store_partial(float* dst, int row0, int T, int hs,
                                              const float (&acc)[D / 8][4], int lane) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + lane / 4 + 8 * half;
    if (row >= T) continue;
    float* p = dst + static_cast<int64_t>(row) * hs + (lane % 4) * 2;
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
      if (8 * t >= hs) break;
      __stcg(reinterpret_cast<float2*>(p + 8 * t), make_float2(acc[t][2 * half], acc[t][2 * half + 1]));
    }
  }
}

// ---- the kernel

// One block per (key block, b*NH + h = blockIdx.y). A block takes a ticket of its head when it starts
// (`tickets` [B*NH]) and ticket t is key block n = gridDim.x - 1 - t: the blocks of a head start last key
// block first, whatever order the GPU dispatches them in, so a block only ever waits on one already
// running or done (no deadlock without relying on in-order dispatch). `ready` [B*NH][query tiles] counts
// the partials added to each tile's accumulator. Both start at zero.
template <int D, typename Out>
__global__ void __launch_bounds__(kOnePassWarps * 32)
    attention_backward_one_pass_kernel(Out* dqkv, BackwardRows src, const float* lse, const float* dsum,
                                       float* dq_acc, int* ready, int* tickets, int T, int C, int NH,
                                       float scale) {
  static_assert(kOnePassWarps * kRows == kTile, "a block's keys are one tile");
  constexpr int kThreads = kOnePassWarps * 32;
  constexpr int ld = ld_of<D>();
  constexpr int kTileElems = kTile * ld;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* k_s = reinterpret_cast<bf16*>(smem);  // [64][ld]
  bf16* v_s = k_s + kTileElems;               // [64][ld]
  bf16* qd_s = v_s + kTileElems;              // Q stage 0, 1, dO stage 0, 1: [64][ld] each
  bf16* ds_s = qd_s + 4 * kTileElems;         // dS^T [64 keys][kDsLd]
  float* stat_s = reinterpret_cast<float*>(ds_s + kTile * kDsLd);  // lse stage 0, 1, D stage 0, 1
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int bh = blockIdx.y;
  int* ticket_s = reinterpret_cast<int*>(ds_s);  // dS^T is first written after the loop's first barrier
  if (threadIdx.x == 0) *ticket_s = atomicAdd(tickets + bh, 1);
  __syncthreads();
  const int n = gridDim.x - 1 - *ticket_s;  // the key block; a block waits only on those with earlier tickets
  const int b = bh / NH;
  const int h = bh % NH;
  const int k0 = n * kTile;
  const int w0 = k0 + warp * kRows;  // the warp's first key
  const int hs = C / NH;
  const bf16* q_g = src.q.head(b, h);
  const bf16* do_g = src.dout.head(b, h);
  const float* lse_g = lse + static_cast<int64_t>(bh) * T;
  const float* d_g = dsum + static_cast<int64_t>(bh) * T;
  const int qtiles = (T - 1) / kTile + 1;
  float* acc_g = dq_acc + static_cast<int64_t>(bh) * T * hs;  // [T][hs]
  int* ready_g = ready + static_cast<int64_t>(bh) * qtiles;
  Out* dqkv_g = dqkv + static_cast<int64_t>(b) * T * 3 * C + h * hs;
  auto prefetch = [&](int qt) {
    prefetch_query_tile<D, kThreads>(qd_s, stat_s, (qt - n) % 2, src, q_g, do_g, lse_g, d_g, qt * kTile, T,
                                     hs);
  };

  load_tile_async<D, kThreads>(k_s, src.k.head(b, h), src.k.ld, kTile, k0, T, hs);
  load_tile_async<D, kThreads>(v_s, src.v.head(b, h), src.v.ld, kTile, k0, T, hs);
  prefetch(n);
  const bf16* k_w = k_s + warp * kRows * ld;
  const bf16* v_w = v_s + warp * kRows * ld;
  float dk[D / 8][4];
  float dv[D / 8][4];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) {
    dk[t][0] = dk[t][1] = dk[t][2] = dk[t][3] = 0.0f;
    dv[t][0] = dv[t][1] = dv[t][2] = dv[t][3] = 0.0f;
  }

  for (int qt = n; qt < qtiles; ++qt) {
    const int q0 = qt * kTile;
    const int stage = (qt - n) % 2;
    const bf16* q_s = qd_s + stage * kTileElems;
    const bf16* do_s = qd_s + (2 + stage) * kTileElems;
    const float* lse_s = stat_s + stage * kTile;
    const float* d_s = stat_s + (2 + stage) * kTile;
    async_wait_all();
    __syncthreads();  // this tile landed; every warp is done with the other stage and with dS^T
    if (qt + 1 < qtiles) prefetch(qt + 1);
    {
      float ds[kNT][4];
      dkv_tile_step<D>(dk, dv, ds, k_w, v_w, q_s, do_s, lse_s, d_s, q0, w0, T, scale, lane);
      store_ds_rows(ds_s + warp * kRows * kDsLd, ds, lane);
    }
    __syncthreads();     // dS^T whole
    float dq[D / 8][4];  // the partial of query rows q0 + 16 warp on
    product_ds_k<D>(dq, ds_s, warp * kRows, k_s, lane);
    const int r0 = q0 + warp * kRows;
    if (threadIdx.x == 0) wait_for(ready_g + qt, qt - n, n, qt, bh);  // blocks qt, ..., n + 1 added theirs
    __syncthreads();
    if (qt > n) add_partial<D>(dq, acc_g, r0, T, hs, lane);
    if (n == 0) {
      store_rows<D, false>(dqkv_g, 3 * C, r0, T, hs, dq, lane);  // the last partial: dQ itself
    } else {
      store_partial<D>(acc_g, r0, T, hs, dq, lane);
      __threadfence();
      __syncthreads();  // every warp's rows are out
      if (threadIdx.x == 0) store_release(ready_g + qt, qt - n + 1);
    }
  }

  store_rows<D, false>(dqkv_g + C, 3 * C, w0, T, hs, dk, lane);
  store_rows<D, false>(dqkv_g + 2 * C, 3 * C, w0, T, hs, dv, lane);
}

// ---- host side

template <int D>
constexpr size_t one_pass_shared_bytes() {
  return (6 * static_cast<size_t>(kTile) * ld_of<D>() + static_cast<size_t>(kTile) * kDsLd) * sizeof(bf16) +
         4 * kTile * sizeof(float);
}

// The accumulator (floats), then the counters: per (head, query tile), and one ticket per head.
struct OnePassScratch {
  size_t acc_floats, counters;
};

OnePassScratch one_pass_scratch(int B, int T, int C, int NH) {
  const size_t heads = static_cast<size_t>(B) * NH;
  return {static_cast<size_t>(B) * T * C, heads * ceil_div(T, kTile) + heads};
}

template <int D, typename Out>
Status launch_one_pass(Out* dqkv, const float* dsum, const BackwardRows& src, const float* lse, int B, int T,
                       int C, int NH, float scale, void* scratch, cudaStream_t stream) {
  const OnePassScratch sizes = one_pass_scratch(B, T, C, NH);
  ScratchCarver carver(scratch);
  float* acc = carver.take<float>(sizes.acc_floats);
  int* ready = carver.take<int>(sizes.counters);
  int* tickets = ready + (sizes.counters - static_cast<size_t>(B) * NH);
  PERIGEE_CHECK_CUDA(cudaMemsetAsync(ready, 0, sizes.counters * sizeof(int), stream));
  constexpr size_t smem = one_pass_shared_bytes<D>();
  PERIGEE_CHECK(allow_shared_memory(attention_backward_one_pass_kernel<D, Out>, smem));
  const dim3 grid(static_cast<unsigned>(ceil_div(T, kTile)), static_cast<unsigned>(B * NH));
  attention_backward_one_pass_kernel<D, Out><<<grid, kOnePassWarps * 32, smem, stream>>>(
      dqkv, src, lse, dsum, acc, ready, tickets, T, C, NH, scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out>
Status one_pass_impl(Out* dqkv, const float* dsum, const BackwardRows& src, const float* lse, int B, int T,
                     int C, int NH, float scale, void* scratch, cudaStream_t stream) {
  const int hs = C / NH;
  PERIGEE_REQUIRE(attention_one_pass_supports(B, NH, hs), StatusCode::kInternal,
                  "attention_backward_one_pass_bf16: B*NH = ", static_cast<int64_t>(B) * NH, ", hs = ", hs,
                  " is not a problem it takes");
  if (hs <= 32) return launch_one_pass<32>(dqkv, dsum, src, lse, B, T, C, NH, scale, scratch, stream);
  return launch_one_pass<64>(dqkv, dsum, src, lse, B, T, C, NH, scale, scratch, stream);
}

}  // namespace

size_t attention_one_pass_shared_bytes(int head_size) {
  if (head_size <= 32) return one_pass_shared_bytes<32>();
  if (head_size <= kOnePassMaxHeadSize) return one_pass_shared_bytes<64>();
  return 0;
}

bool attention_one_pass_supports(int B, int NH, int hs) {
  return hs <= kOnePassMaxHeadSize && static_cast<int64_t>(B) * NH <= 65535;
}

size_t attention_one_pass_scratch_bytes(int B, int T, int C, int NH) {
  const OnePassScratch sizes = one_pass_scratch(B, T, C, NH);
  return scratch_bytes<float>(sizes.acc_floats) + scratch_bytes<int>(sizes.counters);
}

Status attention_backward_one_pass_bf16(float* dqkv, const float* dsum, const BackwardRows& src,
                                        const float* lse, int B, int T, int C, int NH, float scale,
                                        void* scratch, cudaStream_t stream) {
  return one_pass_impl(dqkv, dsum, src, lse, B, T, C, NH, scale, scratch, stream);
}

Status attention_backward_one_pass_bf16(uint16_t* dqkv, const float* dsum, const BackwardRows& src,
                                        const float* lse, int B, int T, int C, int NH, float scale,
                                        void* scratch, cudaStream_t stream) {
  return one_pass_impl(dqkv, dsum, src, lse, B, T, C, NH, scale, scratch, stream);
}

}  // namespace perigee::kernels::cuda
