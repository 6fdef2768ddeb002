// Backend: the op set a GPT training step needs, implemented once per device kind.
// The CPU backend (kernels/cpu, fp32, OpenBLAS GEMMs, OpenMP elsewhere) is the reference; the CUDA
// backend implements the same ops with the same semantics. Every pointer is memory the backend
// allocated (host memory on CPU, device memory on CUDA). Layouts are row-major:
//   activations [B, T, C] (N = B*T rows), linear weights [OC, C] (out = inp @ W^T + bias),
//   attention qkv [B, T, 3C] packed as (q | k | v), heads NH of size hs = C/NH inside each third,
//   attention probabilities [B, NH, T, T], logits/probs [N, Vp] with V real columns (Vp >= V pads).
// Backward ops ACCUMULATE (+=) into parameter gradients (dweight, dbias, dwte, dwpe: tied weights and
// gradient accumulation add up), so callers zero them first. Input gradients of ops whose input has a
// single consumer are WRITTEN (=): dinp of matmul_backward, dinp of gelu_backward (which may be
// written over dout), dqkv of attention_backward, dlogits of crossentropy_backward; the residual
// stream's gradient (dinp of layernorm_backward) is accumulated, as two branches meet there.
// The matmul family (matmul_forward, matmul_backward and the fused GELU forms) runs out of place: an
// output sharing a byte with an input or with another output is refused with kInvalidArgument before
// anything is written (op_checks.hpp). Every op is deterministic: the same inputs and thread count
// give bit-identical outputs (no racy reductions).
// Activation arguments typed Act/ConstAct (kernels/act.hpp) may be fp32 or bf16 storage, each
// independently; every backend accepts every combination (ops compute in fp32, widening bf16 inputs
// and rounding bf16 outputs once), and a backend may have native paths for the combinations it is
// fast at. Parameters, their gradients, the residual stream and everything else stay fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/status.hpp"
#include "kernels/act.hpp"
#include "kernels/working_memory.hpp"

namespace perigee::kernels {

enum class DeviceKind { kCpu, kCuda };

struct AdamWParams {
  float lr = 3e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * weight_decay * p
  int64_t step = 1;           // 1-based, for bias correction
  float grad_scale = 1.0f;    // multiplies every gradient first (global-norm clipping)
};

// A run of consecutive elements of the flat optimizer buffers that share one weight-decay choice.
struct AdamWRun {
  size_t offset = 0;
  size_t count = 0;
  bool decay = false;  // AdamWParams::weight_decay applies; otherwise none
};

// The memory a backend allocates from, as it stands now.
struct MemoryInfo {
  uint64_t available = 0;  // bytes new allocations can still take
  uint64_t total = 0;      // bytes
  std::string where;       // "host RAM (MemAvailable)", "CUDA device 0 (NVIDIA H100 ...)"
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  virtual const char* name() const = 0;

  // ---- memory
  virtual Status allocate(void** ptr, size_t bytes) = 0;  // zero-filled, 64-byte aligned
  virtual void release(void* ptr) = 0;
  virtual Status memset_zero(void* ptr, size_t bytes) = 0;
  virtual Status copy_to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual Status copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual Status synchronize() = 0;
  // Before a large allocation: the CPU backend's host RAM (kernels/cpu/host_memory.hpp: MemAvailable
  // within the memory cgroup's limits; Linux overcommits, so allocate() alone would not tell), the
  // CUDA backend's device memory (cudaMemGetInfo).
  virtual Status memory_info(MemoryInfo* out) const = 0;
  // Bytes the backend allocates by itself for a model of n fp32 parameters (the CUDA backend's bf16
  // weight cache); 0 by default.
  virtual uint64_t model_overhead_bytes(size_t /*n_params*/) const { return 0; }
  // Working memory (kernels/working_memory.hpp): *bytes = what the most demanding of `calls` takes
  // from the backend's own temporaries, and reserving that much up front so that those calls never
  // allocate. Defaults: none counted (a backend without temporaries of its own).
  virtual Status working_memory_bytes(std::span<const OpCall> /*calls*/, uint64_t* bytes) const {
    *bytes = 0;
    return Status::ok();
  }
  virtual Status reserve_working_memory(std::span<const OpCall> /*calls*/) { return Status::ok(); }

  // ---- forward / backward ops
  // out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] with wte [V, C]. Every token must lie in [0, V): the
  // CPU refuses others; the CUDA kernels, which cannot read tokens without a sync, write NaN rows for
  // them (the loss then fails the step's checks) and leave their gradient rows alone.
  virtual Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                                 int T, int C, int V) = 0;
  virtual Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                                  int T, int C, int V) = 0;

  // out = (inp - mean) * rstd * weight + bias per row, eps = 1e-5; saves mean[N], rstd[N].
  virtual Status layernorm_forward(Act out, float* mean, float* rstd, const float* inp, const float* weight,
                                   const float* bias, int N, int C) = 0;
  virtual Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                    const float* inp, const float* weight, const float* mean,
                                    const float* rstd, int N, int C) = 0;

  // out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC] (bias may be null).
  virtual Status matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                                int OC) = 0;
  // dinp, dweight, dbias may each be null (not needed); dbias null when there is no bias.
  // dinp is written; dweight and dbias are accumulated.
  virtual Status matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                 const float* weight, int N, int C, int OC) = 0;

  // Causal multi-head self-attention: out[B,T,C] from qkv[B,T,3C], scale 1/sqrt(C/NH). `att` is the
  // state forward saves for backward, attention_state_size() floats: the CPU backend stores the
  // softmax probabilities [B,NH,T,T] (zero above the diagonal); a flash-style backend may store
  // only the per-row log-sum-exp [B,NH,T]. The backward takes the forward's `out` too (a flash-style
  // backward needs D_i = dout_i . out_i) and WRITES dqkv.
  virtual size_t attention_state_size(int B, int T, int C, int NH) const = 0;
  virtual Status attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) = 0;
  virtual Status attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att,
                                    int B, int T, int C, int NH) = 0;

  // GELU, tanh approximation (GPT-2). The backward writes dinp. An output may be written over an input
  // (out over inp, dinp over dout), of the same or the other storage type.
  virtual Status gelu_forward(Act out, ConstAct inp, size_t n) = 0;
  virtual Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) = 0;

  // out = a + b (out may alias a or b).
  virtual Status residual_forward(float* out, const float* a, const float* b, size_t n) = 0;

  // ---- the residual add fused with the LayerNorm that reads its sum (twice per layer in GPT-2):
  // residual = a + b [N, C] (may alias a or b), then layernorm_forward(out, mean, rstd, residual, ...).
  // The default runs the two ops; a fusing backend (fuses_residual_layernorm()) gives the same bits
  // in one pass that reads a and b once and never reads the sum back from memory.
  virtual bool fuses_residual_layernorm() const { return false; }
  virtual Status residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd,
                                            const float* a, const float* b, const float* weight,
                                            const float* bias, int N, int C);

  // ---- fused forms of the MLP's GELU with its neighbouring linear layers. The defaults run the ops
  // above in order, so a backend that does not fuse (fuses_gelu() false) gives exactly the unfused
  // results; a fusing backend (the CUDA backend with gelu_fusion on: cuBLASLt GELU epilogues) may differ
  // from them by the GEMM's summation order and its own GELU evaluation, once rounded.
  virtual bool fuses_gelu() const { return false; }
  // pre = inp @ weight^T + bias, out = gelu(pre): matmul_forward(pre) then gelu_forward(out, pre).
  virtual Status matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight, const float* bias,
                                     int N, int C, int OC);
  // The backward of a linear layer whose input inp = gelu(pre) [N, C]: dweight and dbias accumulate as
  // in matmul_backward, and dpre [N, C] = gelu'(pre) * (dout @ weight) is WRITTEN. The default is
  // matmul_backward with dinp = dpre, then gelu_backward in place (dpre rounded once more when bf16,
  // exactly as a separate dinp of dpre's type would be).
  virtual Status matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                      const float* weight, ConstAct pre, int N, int C, int OC);

  // Fused softmax + cross-entropy over the first V of Vp columns. probs may alias logits (in place);
  // padded columns get probability 0. losses[i] = -log(probs[i, targets[i]]).
  virtual Status crossentropy_forward(float* losses, float* probs, const float* logits,
                                      const int32_t* targets, int N, int V, int Vp) = 0;
  // dlogits = dloss * (probs - onehot(targets)), padded columns 0 (written, not accumulated;
  // may alias probs).
  virtual Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                       float dloss, int N, int V, int Vp) = 0;
  // Both in one pass for a training step: losses as crossentropy_forward, and dlogits as
  // crossentropy_backward would write from those probabilities (same values, bit for bit), without
  // storing the probabilities. logits may be bf16 ([device] logits: the LM head's GEMM wrote them rounded
  // once; they are widened exactly). A bf16 dlogits (the LM head's backward GEMMs read it as it is) holds
  // each fp32 gradient rounded once. dlogits may alias logits when both have the same storage type.
  virtual Status crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits,
                                               const int32_t* targets, float dloss, int N, int V, int Vp) = 0;

  // ---- optimizer and reductions over flat buffers
  virtual Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                              const AdamWParams& hp) = 0;
  // AdamW over runs of the same flat buffers (sorted by offset, disjoint), each run as adamw_update
  // with hp.weight_decay or with none: the same bits as one adamw_update call per run. The default
  // makes those calls; a backend may do every run in one pass.
  virtual Status adamw_update_runs(float* params, const float* grads, float* m, float* v,
                                   std::span<const AdamWRun> runs, const AdamWParams& hp);
  // *out = sum of x[i]^2 in double, with a fixed summation order (independent of thread count).
  virtual Status sum_squares(const float* x, size_t n, double* out) = 0;
  virtual Status scale(float* x, float s, size_t n) = 0;

  // ---- bf16 conversion of flat buffers (gradients averaged as bf16: [comm] grad_dtype = "bf16")
  // out[i] = the bf16 bits of in[i], rounded as core/bf16.hpp says (nearest, ties to even; a NaN
  // stays NaN), the same bits on every backend. out and in do not overlap.
  virtual Status to_bf16(uint16_t* out, const float* in, size_t n) = 0;
  // out[i] = float(in[i]) * s in fp32 (the widening is exact; one rounding, of the product); a NaN
  // comes back quieted with its sign and payload, the same bits on every backend.
  virtual Status from_bf16(float* out, const uint16_t* in, float s, size_t n) = 0;

  // ---- weight cache (a backend whose GEMMs read the weights in another type)
  // [params, params + n) holds new values that stay unchanged until the next call: a backend may
  // convert them once here into a copy in its GEMM operand type and take any GEMM weight inside the
  // range from that copy instead of converting the weight at each GEMM (the CUDA backend with
  // precision bf16 and its weight cache on: one rounding pass per forward pass instead of two per
  // GEMM weight and step). Same bits either way. The caller calls it again after every change to
  // the range (GptModel: at the start of each forward pass) and release_weight_cache() before
  // freeing it. Defaults: nothing (the CPU backend reads fp32 weights as they are).
  virtual Status refresh_weight_cache(const float* /*params*/, size_t /*n*/) { return Status::ok(); }
  virtual void release_weight_cache(const float* /*params*/) {}
};

}  // namespace perigee::kernels
