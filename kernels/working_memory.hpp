// Working memory: the temporaries a backend's ops take from memory of its own (the CUDA backend's
// grow-on-demand DeviceScratch, ActCast's fp32 copies of bf16 tensors on either backend, ABFT's
// snapshots), sized per call. A caller that knows its ops in
// advance (GptModel) lists them as OpCall records; Backend::working_memory_bytes says how much the
// largest needs, so a memory check can count it before the run, and Backend::reserve_working_memory
// allocates it up front, so a step never grows it (nor fails to) half-way.
#pragma once

#include <cstddef>

#include "kernels/act.hpp"

namespace perigee::kernels {

// One op call, with the sizes and storage types its working memory depends on. The ops not listed
// (residual, cross-entropy, AdamW) take none on either backend for the storage GptModel gives them;
// LayerNorm forward takes none on CUDA and, on the CPU, one [N, C] copy for a bf16 output, less than
// any attention call of the same pass; GELU takes none on CUDA.
struct OpCall {
  enum class Op {
    kEncoderBackward,
    kLayerNormBackward,
    kMatmulForward,
    kMatmulBackward,
    kAttentionForward,
    kAttentionBackward,
    kGeluForward,
    kGeluBackward,
    kSumSquares
  };
  Op op = Op::kSumSquares;
  // matmul: out [N, OC] = inp [N, C] . weight^T; layernorm: N rows of C; encoder and attention: B, T,
  // C (and NH heads); sum_squares: n elements.
  int N = 0, C = 0, OC = 0, B = 0, T = 0, NH = 0;
  size_t n = 0;
  // matmul_forward: inp, out. matmul_backward: dinp (out), dout, inp. attention_forward: out, qkv
  // (inp). attention_backward: dqkv (out), dout, qkv (inp; the forward's output, which the backward
  // reads too, has qkv's type). gelu_forward: out, inp. gelu_backward: dinp (out), inp, dout.
  DType inp = DType::kF32, out = DType::kF32, dout = DType::kF32;
  // matmul_forward: a bias. matmul_backward: which gradients it computes, and whether dweight and
  // dbias may already hold a sum it adds to (gradient accumulation: every pass after the first).
  bool bias = false, dinp = false, dweight = false, accumulate = false;

  bool operator==(const OpCall&) const = default;

  static OpCall encoder_backward(int B, int T, int C) {
    OpCall c;
    c.op = Op::kEncoderBackward, c.B = B, c.T = T, c.C = C, c.N = B * T;
    return c;
  }
  static OpCall layernorm_backward(int N, int C) {
    OpCall c;
    c.op = Op::kLayerNormBackward, c.N = N, c.C = C;
    return c;
  }
  static OpCall matmul_forward(int N, int C, int OC, DType inp, DType out, bool bias) {
    OpCall c;
    c.op = Op::kMatmulForward, c.N = N, c.C = C, c.OC = OC, c.inp = inp, c.out = out, c.bias = bias;
    return c;
  }
  // dinp of type `out` (or none: dinp false), dweight, dbias (bias).
  static OpCall matmul_backward(int N, int C, int OC, DType dinp_type, DType dout, DType inp, bool dinp,
                                bool dweight, bool dbias, bool accumulate = false) {
    OpCall c;
    c.accumulate = accumulate;
    c.op = Op::kMatmulBackward, c.N = N, c.C = C, c.OC = OC, c.out = dinp_type, c.dout = dout, c.inp = inp;
    c.dinp = dinp, c.dweight = dweight, c.bias = dbias;
    return c;
  }
  static OpCall attention_forward(int B, int T, int C, int NH, DType out, DType qkv) {
    OpCall c;
    c.op = Op::kAttentionForward, c.B = B, c.T = T, c.C = C, c.NH = NH, c.N = B * T;
    c.out = out, c.inp = qkv;
    return c;
  }
  static OpCall attention_backward(int B, int T, int C, int NH, DType dqkv, DType dout, DType qkv) {
    OpCall c;
    c.op = Op::kAttentionBackward, c.B = B, c.T = T, c.C = C, c.NH = NH, c.N = B * T;
    c.out = dqkv, c.dout = dout, c.inp = qkv;
    return c;
  }
  static OpCall gelu_forward(size_t n, DType out, DType inp) {
    OpCall c;
    c.op = Op::kGeluForward, c.n = n, c.out = out, c.inp = inp;
    return c;
  }
  static OpCall gelu_backward(size_t n, DType dinp, DType inp, DType dout) {
    OpCall c;
    c.op = Op::kGeluBackward, c.n = n, c.out = dinp, c.inp = inp, c.dout = dout;
    return c;
  }
  static OpCall sum_squares(size_t n) {
    OpCall c;
    c.op = Op::kSumSquares, c.n = n;
    return c;
  }
};

}  // namespace perigee::kernels
