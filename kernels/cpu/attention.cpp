// Causal multi-head self-attention, fp32. qkv [B, T, 3C] packed (q | k | v), head h in columns
// [h*hs, (h+1)*hs) of each third, hs = C/NH; att [B, NH, T, T] softmax probabilities (zero above the
// diagonal); out/dout [B, T, C]; dqkv [B, T, 3C] written (every element by one task). Scores are scaled by
// 1/sqrt(hs). Work is split into tasks over (b, h, block of kBlock rows) and every matrix product inside a
// task is a single-threaded cblas_sgemm on strided views of qkv/att/out. Forward task (b, h, query rows [t0,
// t1)):
//   att[t0:t1, 0:t1] = scale * Q K^T, causal softmax per row in place, out[t0:t1] = P V.
// Backward, in two race-free passes (the thread-local scratch holds one kBlock x T tile):
//   1. per query block: dP = dO V^T, D_t = sum_t2 P dP (kept, [B, NH, T]), dS = P (dP - D_t) scale,
//      dQ = dS K;
//   2. per key block [k0, k1): dP = dO[k0:T] V[k0:k1]^T, dS as above, dK = dS^T Q[k0:T],
//      dV = P[k0:T, k0:k1]^T dO[k0:T].
// D_t is computed here from P and dP; the forward's `out` (which gives D_t = dO_t . O_t) is not needed.
// Each output element belongs to one task and every task's arithmetic is fixed, so results do not
// depend on the thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

constexpr int64_t kBlock = 64;  // query rows (forward, pass 1) or key rows (pass 2) per task

// Strided views of one (b, h) slice.
struct Head {
  const float* q;  // row t at q + t * ld_qkv; k and v likewise
  const float* k;
  const float* v;
  int64_t ld_qkv;  // 3C
  int64_t ld_out;  // C
  int64_t T;
  int64_t hs;
  float scale;
};

// row[0..t] holds scaled scores: replaced by their softmax; row[t+1..T) is zeroed.
PERIGEE_CPU_CLONES
void causal_softmax_row(float* row, int64_t t, int64_t T) {
  float max_score = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max_score)
  for (int64_t j = 0; j <= t; ++j) max_score = row[j] > max_score ? row[j] : max_score;
#pragma omp simd
  for (int64_t j = 0; j <= t; ++j) row[j] = exp_clamped(row[j] - max_score);
  const float inv_sum =
      static_cast<float>(1.0 / lane_sum(t + 1, [row](int64_t j) { return static_cast<double>(row[j]); }));
#pragma omp simd
  for (int64_t j = 0; j <= t; ++j) row[j] *= inv_sum;
#pragma omp simd
  for (int64_t j = t + 1; j < T; ++j) row[j] = 0.0f;
}

// ds[0..n) holds dP for probabilities p[0..n): returns D = sum p * dP and replaces ds with
// p * (dP - D) * scale.
PERIGEE_CPU_CLONES
float softmax_backward_row(float* ds, const float* p, int64_t n, float scale) {
  const float D =
      static_cast<float>(lane_sum(n, [ds, p](int64_t j) { return static_cast<double>(p[j] * ds[j]); }));
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - D) * scale;
  return D;
}

// ds[0..n) holds dP: replaced by p * (dP - D) * scale with a known D.
PERIGEE_CPU_CLONES
void softmax_backward_apply(float* ds, const float* p, int64_t n, float D, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - D) * scale;
}

void forward_block(float* out, float* att, const Head& h, int64_t t0, int64_t t1) {
  const int64_t m = t1 - t0;
  float* s = att + t0 * h.T;  // rows t0..t1-1 of this head's [T, T] probabilities
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, t1, h.hs, h.scale, h.q + t0 * h.ld_qkv, h.ld_qkv,
              h.k, h.ld_qkv, 0.0f, s, h.T);
  for (int64_t i = 0; i < m; ++i) causal_softmax_row(s + i * h.T, t0 + i, h.T);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, h.hs, t1, 1.0f, s, h.T, h.v, h.ld_qkv, 0.0f,
              out + t0 * h.ld_out, h.ld_out);
}

// Pass 1 for query rows [t0, t1): dQ = dS K, D_t into dsum[t].
void backward_query_block(float* dq, float* dsum, float* scratch, const float* dout, const float* att,
                          const Head& h, int64_t t0, int64_t t1) {
  const int64_t m = t1 - t0;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, t1, h.hs, 1.0f, dout + t0 * h.ld_out, h.ld_out, h.v,
              h.ld_qkv, 0.0f, scratch, t1);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t t = t0 + i;
    float* ds = scratch + i * t1;
    dsum[t] = softmax_backward_row(ds, att + t * h.T, t + 1, h.scale);
#pragma omp simd
    for (int64_t j = t + 1; j < t1; ++j) ds[j] = 0.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, h.hs, t1, 1.0f, scratch, t1, h.k, h.ld_qkv, 0.0f,
              dq + t0 * h.ld_qkv, h.ld_qkv);
}

// Pass 2 for key rows [k0, k1): dK = dS^T Q and dV = P^T dO over query rows [k0, T).
void backward_key_block(float* dk, float* dv, float* scratch, const float* dout, const float* att,
                        const float* dsum, const Head& h, int64_t k0, int64_t k1) {
  const int64_t kw = k1 - k0;
  const int64_t rows = h.T - k0;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kw, h.hs, 1.0f, dout + k0 * h.ld_out, h.ld_out,
              h.v + k0 * h.ld_qkv, h.ld_qkv, 0.0f, scratch, kw);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = k0 + i;
    softmax_backward_apply(scratch + i * kw, att + t * h.T + k0, kw, dsum[t], h.scale);
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kw, h.hs, rows, 1.0f, scratch, kw, h.q + k0 * h.ld_qkv,
              h.ld_qkv, 0.0f, dk + k0 * h.ld_qkv, h.ld_qkv);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kw, h.hs, rows, 1.0f, att + k0 * h.T + k0, h.T,
              dout + k0 * h.ld_out, h.ld_out, 0.0f, dv + k0 * h.ld_qkv, h.ld_qkv);
}

Status check_attention(const char* op, int B, int T, int C, int NH) {
  PERIGEE_CHECK(check_dims(op, {B, T, C, NH}));
  PERIGEE_REQUIRE(C % NH == 0, StatusCode::kInvalidArgument, op, ": C = ", C,
                  " is not a multiple of NH = ", NH);
  return Status::ok();
}

// The (b, h) slice of qkv.
Head head_view(const float* qkv, int64_t b, int64_t hd, int64_t T, int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const float* base = qkv + b * T * 3 * C + hd * hs;
  return {base, base + C, base + 2 * C, 3 * C, C, T, hs, 1.0f / std::sqrt(static_cast<float>(hs))};
}

}  // namespace

Status CpuBackend::attention_forward_f32(float* out, float* att, const float* qkv, int B, int T, int C,
                                         int NH) {
  PERIGEE_CHECK(check_pointers("attention_forward", {out, att, qkv}));
  PERIGEE_CHECK(check_attention("attention_forward", B, T, C, NH));
  const int64_t blocks_per_head = (T + kBlock - 1) / kBlock;
  const int64_t tasks = int64_t{B} * NH * blocks_per_head;
  serial_blas();
  // Largest blocks (last query rows) first, so the dynamic schedule ends balanced.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_) if (tasks > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t blk = blocks_per_head - 1 - task % blocks_per_head;
    const int64_t bh = task / blocks_per_head;
    const int64_t b = bh / NH;
    const int64_t hd = bh % NH;
    const Head h = head_view(qkv, b, hd, T, C, NH);
    const int64_t t0 = blk * kBlock;
    forward_block(out + b * T * C + hd * h.hs, att + bh * T * T, h, t0, std::min<int64_t>(T, t0 + kBlock));
  }
  return Status::ok();
}

Status CpuBackend::attention_backward_f32(float* dqkv, const float* dout, const float* qkv,
                                          const float* /*out*/, const float* att, int B, int T, int C,
                                          int NH) {
  PERIGEE_CHECK(check_pointers("attention_backward", {dqkv, dout, qkv, att}));
  PERIGEE_CHECK(check_attention("attention_backward", B, T, C, NH));
  const int64_t blocks_per_head = (T + kBlock - 1) / kBlock;
  const int64_t tasks = int64_t{B} * NH * blocks_per_head;
  std::vector<float> dsum(int64_t{B} * NH * T);
  serial_blas();
#pragma omp parallel num_threads(threads_) if (tasks > 1)
  {
    std::vector<float> scratch(kBlock * static_cast<int64_t>(T));
    // Pass 1: largest query blocks first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t blk = blocks_per_head - 1 - task % blocks_per_head;
      const int64_t bh = task / blocks_per_head;
      const int64_t b = bh / NH;
      const int64_t hd = bh % NH;
      const Head h = head_view(qkv, b, hd, T, C, NH);
      const int64_t t0 = blk * kBlock;
      backward_query_block(dqkv + b * T * 3 * C + hd * h.hs, dsum.data() + bh * T, scratch.data(),
                           dout + b * T * C + hd * h.hs, att + bh * T * T, h, t0,
                           std::min<int64_t>(T, t0 + kBlock));
    }
    // The implicit barrier above publishes every D_t. Pass 2: largest key blocks (first keys) first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t blk = task % blocks_per_head;
      const int64_t bh = task / blocks_per_head;
      const int64_t b = bh / NH;
      const int64_t hd = bh % NH;
      const Head h = head_view(qkv, b, hd, T, C, NH);
      const int64_t k0 = blk * kBlock;
      float* dbase = dqkv + b * T * 3 * C + hd * h.hs;
      backward_key_block(dbase + C, dbase + 2 * int64_t{C}, scratch.data(), dout + b * T * C + hd * h.hs,
                         att + bh * T * T, dsum.data() + bh * T, h, k0, std::min<int64_t>(T, k0 + kBlock));
    }
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
