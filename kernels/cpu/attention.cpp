// Causal multi-head self-attention, fp32. qkv [B, T, 3C] packed (q | k | v), head h in columns
// [h*hs, (h+1)*hs) of each third, hs = C/NH; att [B, NH, T, T] softmax probabilities (zero above the
// diagonal); out/dout [B, T, C]; dqkv [B, T, 3C] accumulated. Scores are scaled by 1/sqrt(hs).
// Forward: one task per (b, h, t) query row. Backward, in two race-free passes:
//   1. per query row (b, h, t): datt[t2] = dout_t . v_t2, D_t = sum_t2 att*datt (kept, [B, NH, T]),
//      dq_t += scale * sum_t2 att*(datt - D_t) * k_t2, with a thread-local T-length scratch;
//   2. per block of kKeyBlock key rows (b, h, t2..): dk_t2 += scale * sum_t att*(datt - D_t) * q_t and
//      dv_t2 += sum_t att * dout_t over t >= t2, recomputing datt.
// Each output element is written by one task in a fixed order, so results are thread-count free.
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

constexpr int64_t kKeyBlock = 16;  // key rows per backward pass-2 task

// Geometry of one (b, h) slice. Row r of q/k/v starts at base + r * qkv_stride, row r of out/dout at
// base + r * out_stride, row r of att at base + r * T.
struct HeadView {
  int64_t T;
  int64_t hs;
  int64_t qkv_stride;  // 3C
  int64_t out_stride;  // C
  float scale;
};

// att_row[0..t] = softmax(scale * q . k_t2), att_row[t+1..T) = 0, out_row = sum_t2 att_row[t2] v_t2.
PERIGEE_CPU_CLONES
void forward_row(float* out_row, float* att_row, const float* q, const float* k0, const float* v0, int64_t t,
                 const HeadView& h) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t t2 = 0; t2 <= t; ++t2) {
    const float s = dot(q, k0 + t2 * h.qkv_stride, h.hs) * h.scale;
    att_row[t2] = s;
    max_score = std::max(max_score, s);
  }
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t t2 = 0; t2 <= t; ++t2) {
    const float e = exp_clamped(att_row[t2] - max_score);
    att_row[t2] = e;
    sum += e;
  }
  const float inv_sum = 1.0f / sum;
#pragma omp simd
  for (int64_t t2 = 0; t2 <= t; ++t2) att_row[t2] *= inv_sum;
#pragma omp simd
  for (int64_t t2 = t + 1; t2 < h.T; ++t2) att_row[t2] = 0.0f;
#pragma omp simd
  for (int64_t c = 0; c < h.hs; ++c) out_row[c] = 0.0f;
  for (int64_t t2 = 0; t2 <= t; ++t2) axpy(out_row, att_row[t2], v0 + t2 * h.qkv_stride, h.hs);
}

// Pass 1 for query row t: dq_t += scale * sum_t2 att*(datt - D) * k_t2; returns D.
// scratch holds T + hs floats.
PERIGEE_CPU_CLONES
float backward_query_row(float* dq, float* scratch, const float* dout_t, const float* att_row,
                         const float* k0, const float* v0, int64_t t, const HeadView& h) {
  float* datt = scratch;
  float* acc = scratch + h.T;
  float D = 0.0f;
  for (int64_t t2 = 0; t2 <= t; ++t2) {
    datt[t2] = dot(dout_t, v0 + t2 * h.qkv_stride, h.hs);
    D += att_row[t2] * datt[t2];
  }
#pragma omp simd
  for (int64_t c = 0; c < h.hs; ++c) acc[c] = 0.0f;
  for (int64_t t2 = 0; t2 <= t; ++t2) {
    axpy(acc, att_row[t2] * (datt[t2] - D) * h.scale, k0 + t2 * h.qkv_stride, h.hs);
  }
#pragma omp simd
  for (int64_t c = 0; c < h.hs; ++c) dq[c] += acc[c];
  return D;
}

// Pass 2 for key rows [t2_begin, t2_end): accumulates dk and dv over every query row t >= t2.
// acc holds 2 * kKeyBlock * hs floats.
PERIGEE_CPU_CLONES
void backward_key_block(float* dk0, float* dv0, float* acc, const float* q0, const float* v0,
                        const float* dout0, const float* att0, const float* dsum, int64_t t2_begin,
                        int64_t t2_end, const HeadView& h) {
  const int64_t width = (t2_end - t2_begin) * h.hs;
  float* dk_acc = acc;
  float* dv_acc = acc + width;
#pragma omp simd
  for (int64_t i = 0; i < 2 * width; ++i) acc[i] = 0.0f;
  for (int64_t t = t2_begin; t < h.T; ++t) {
    const float* q_t = q0 + t * h.qkv_stride;
    const float* dout_t = dout0 + t * h.out_stride;
    const float* att_row = att0 + t * h.T;
    const float D = dsum[t];
    const int64_t last = std::min(t + 1, t2_end);
    for (int64_t t2 = t2_begin; t2 < last; ++t2) {
      const float a = att_row[t2];
      const float datt = dot(dout_t, v0 + t2 * h.qkv_stride, h.hs);
      const int64_t off = (t2 - t2_begin) * h.hs;
      axpy(dk_acc + off, a * (datt - D) * h.scale, q_t, h.hs);
      axpy(dv_acc + off, a, dout_t, h.hs);
    }
  }
  for (int64_t t2 = t2_begin; t2 < t2_end; ++t2) {
    const int64_t off = (t2 - t2_begin) * h.hs;
    float* dk = dk0 + t2 * h.qkv_stride;
    float* dv = dv0 + t2 * h.qkv_stride;
#pragma omp simd
    for (int64_t c = 0; c < h.hs; ++c) {
      dk[c] += dk_acc[off + c];
      dv[c] += dv_acc[off + c];
    }
  }
}

Status check_attention(const char* op, int B, int T, int C, int NH) {
  PERIGEE_CHECK(check_dims(op, {B, T, C, NH}));
  PERIGEE_REQUIRE(C % NH == 0, StatusCode::kInvalidArgument, op, ": C = ", C,
                  " is not a multiple of NH = ", NH);
  return Status::ok();
}

HeadView head_view(int T, int C, int NH) {
  const int64_t hs = C / NH;
  return {T, hs, 3 * int64_t{C}, C, 1.0f / std::sqrt(static_cast<float>(hs))};
}

}  // namespace

Status CpuBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  PERIGEE_CHECK(check_pointers("attention_forward", {out, att, qkv}));
  PERIGEE_CHECK(check_attention("attention_forward", B, T, C, NH));
  const HeadView h = head_view(T, C, NH);
  const int64_t tasks = int64_t{B} * NH * T;
  // Query rows interleave across threads (row t costs O(t)), so the static schedule stays balanced.
#pragma omp parallel for schedule(static, 1) num_threads(threads_) if (tasks * T * h.hs >= kParallelMin)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t t = task % T;
    const int64_t bh = task / T;
    const int64_t b = bh / NH;
    const int64_t hd = bh % NH;
    const float* base = qkv + b * T * h.qkv_stride + hd * h.hs;
    forward_row(out + (b * T + t) * C + hd * h.hs, att + task * T, base + t * h.qkv_stride, base + C,
                base + 2 * int64_t{C}, t, h);
  }
  return Status::ok();
}

Status CpuBackend::attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                                      int B, int T, int C, int NH) {
  PERIGEE_CHECK(check_pointers("attention_backward", {dqkv, dout, qkv, att}));
  PERIGEE_CHECK(check_attention("attention_backward", B, T, C, NH));
  const HeadView h = head_view(T, C, NH);
  const int64_t rows = int64_t{B} * NH * T;
  const int64_t blocks_per_head = (T + kKeyBlock - 1) / kKeyBlock;
  const int64_t blocks = int64_t{B} * NH * blocks_per_head;
  std::vector<float> dsum(rows);
#pragma omp parallel num_threads(threads_) if (rows * T * h.hs >= kParallelMin)
  {
    std::vector<float> scratch(std::max(T + h.hs, 2 * kKeyBlock * h.hs));
#pragma omp for schedule(static, 1)
    for (int64_t task = 0; task < rows; ++task) {
      const int64_t t = task % T;
      const int64_t bh = task / T;
      const int64_t b = bh / NH;
      const int64_t hd = bh % NH;
      const float* base = qkv + b * T * h.qkv_stride + hd * h.hs;
      float* dq = dqkv + (b * T + t) * h.qkv_stride + hd * h.hs;
      dsum[task] = backward_query_row(dq, scratch.data(), dout + (b * T + t) * C + hd * h.hs, att + task * T,
                                      base + C, base + 2 * int64_t{C}, t, h);
    }
    // The implicit barrier above makes every D_t visible to pass 2.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < blocks; ++task) {
      const int64_t kb = task % blocks_per_head;
      const int64_t bh = task / blocks_per_head;
      const int64_t b = bh / NH;
      const int64_t hd = bh % NH;
      const int64_t t2_begin = kb * kKeyBlock;
      const int64_t t2_end = std::min<int64_t>(T, t2_begin + kKeyBlock);
      const float* base = qkv + b * T * h.qkv_stride + hd * h.hs;
      float* dbase = dqkv + b * T * h.qkv_stride + hd * h.hs;
      backward_key_block(dbase + C, dbase + 2 * int64_t{C}, scratch.data(), base, base + 2 * int64_t{C},
                         dout + b * T * C + hd * h.hs, att + bh * T * T, dsum.data() + bh * T, t2_begin,
                         t2_end, h);
    }
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
