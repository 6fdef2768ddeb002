// GptModel: GPT-2 (token + position embeddings, L pre-LayerNorm blocks of causal multi-head
// attention and a GELU MLP, final LayerNorm, LM head tied to the token embedding) over a Backend.
// Parameters, gradients and the AdamW moments are four flat buffers (one allocation each) with a
// table of named views (HF GPT-2 names; linear weights stored [out, in]). Activations are one
// more flat buffer sized for (max_batch, max_seq): fp32, or with bf16 activations the GEMM operands
// (LayerNorm, attention and GELU outputs, attention and GELU input gradients) as bf16, and with bf16
// logits also the LM head's output and its gradient (in place).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.hpp"
#include "kernels/backend.hpp"
#include "runtime/memory_budget.hpp"

namespace perigee::runtime {

struct GptShape {
  int n_layer = 4;
  int n_head = 4;
  int n_embd = 128;
  int context = 128;
  int vocab = 256;
  int padded_vocab = 256;
};

struct TensorView {
  std::string name;
  size_t offset = 0;  // in elements, into the flat buffer
  std::vector<int> shape;
  size_t size = 0;     // product of shape
  bool decay = false;  // AdamW weight decay applies (2-D weights and embeddings)
};

class ParameterTable {
 public:
  static ParameterTable for_shape(const GptShape& shape);
  const std::vector<TensorView>& views() const { return views_; }
  const TensorView* find(const std::string& name) const;
  size_t total() const { return total_; }

 private:
  void add(std::string name, std::vector<int> shape, bool decay);
  std::vector<TensorView> views_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in views_
  size_t total_ = 0;
};

class GptModel {
 public:
  GptModel() = default;
  ~GptModel();
  GptModel(const GptModel&) = delete;
  GptModel& operator=(const GptModel&) = delete;

  // Allocates all buffers on `backend` (not owned; must outlive the model). `activations`: the storage
  // of the GEMM-operand activations ([device] activations); `logits`: the storage of the logits
  // ([device] logits; bf16 needs bf16 activations, and the logits' gradient then overwrites them).
  // `recompute` ([train] recompute): the forward keeps only each block's residual stream and LayerNorm
  // statistics, and the backward re-runs the block's forward (LayerNorms, c_attn, attention, c_fc and
  // GELU) from them into one layer's buffers: the same gradients bit for bit, for the blocks' forward
  // minus its c_proj GEMMs once more (about +16 % FLOPs for GPT-2 124M) and L - 1 layers' worth of
  // those tensors less memory.
  Status init(const GptShape& shape, kernels::Backend* backend, int max_batch, int max_seq,
              kernels::DType activations = kernels::DType::kF32, kernels::DType logits = kernels::DType::kF32,
              bool recompute = false);

  // What init() with these arguments allocates on `backend`, item by item, without allocating (and
  // what the backend adds for the model: model_overhead_bytes). For a shape whose tensors would not
  // even be addressable (beyond 2^60 bytes) one item with a rough, saturated total.
  // `accumulates`: steps of more than one pass (gradient accumulation), for the backend's working
  // memory (ABFT keeps a copy of a gradient it adds to).
  static std::vector<MemoryItem> memory_items(const GptShape& shape, const kernels::Backend& backend,
                                              int max_batch, int max_seq, kernels::DType activations,
                                              kernels::DType logits, bool recompute,
                                              bool accumulates = false);
  // The op calls of a training pass at (batch, seq) that take working memory on some backend
  // (kernels/working_memory.hpp): forward, backward and the gradient norm's sum_squares; with
  // `accumulates`, the backward GEMMs add to gradients that already hold a sum. init() reserves what
  // the backend says they take at (max_batch, max_seq), and memory_items counts it.
  static std::vector<kernels::OpCall> working_calls(const GptShape& shape, int batch, int seq,
                                                    kernels::DType activations, kernels::DType logits,
                                                    bool accumulates = false);

  const GptShape& shape() const { return shape_; }
  const ParameterTable& table() const { return table_; }
  size_t num_parameters() const { return table_.total(); }
  size_t activation_bytes() const { return act_bytes_; }
  kernels::DType activation_dtype() const { return act_dtype_; }
  kernels::DType logits_dtype() const { return logits_dtype_; }
  bool recomputes() const { return recompute_; }
  kernels::Backend* backend() const { return backend_; }

  float* params() { return params_; }
  float* grads() { return grads_; }
  float* adam_m() { return m_; }
  float* adam_v() { return v_; }

  // GPT-2 initialisation from a seed (normal 0.02, residual projections 0.02/sqrt(2L), zero
  // biases, unit LayerNorm weights, zero padded-vocab rows); the moments are zeroed.
  Status init_parameters(uint64_t seed);

  // Host <-> backend copies of the whole parameter buffer.
  Status get_parameters(std::vector<float>* host) const;
  Status set_parameters(const std::vector<float>& host);

  // inputs/targets: host arrays of B*T tokens (targets may be null: logits only).
  // With targets, *mean_loss receives the mean cross-entropy over the B*T positions, and the next
  // backward() takes the gradient of the sum of those B*T losses divided by `grad_positions` (0: B*T,
  // the batch's mean). A micro-batch of a larger batch passes the larger batch's position count, so
  // that the passes' accumulated gradients are that of the whole batch's mean loss.
  Status forward(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss,
                 int64_t grad_positions = 0);
  // The mean cross-entropy of a batch for validation: forward() with targets, after which backward()
  // refuses to run (its gradient is not one to train on). A forward that fails once it has started
  // on the device leaves nothing for backward() or copy_logits() either (one refused for its
  // arguments changes nothing).
  Status evaluate(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss);
  Status zero_grad();
  // Adds to grads() the gradient left by the last forward (which must have had targets): that of its
  // mean loss unless forward() was given grad_positions. The gradient buffer accumulates: zero_grad()
  // first for a fresh gradient.
  Status backward();
  // Gradient accumulation: forward and backward over B sequences in passes of `micro` sequences
  // (micro divides B and is at most the allocated batch), adding to grads() the gradient of the mean
  // loss over all B*T positions; *mean_loss is that mean (the mean of the passes' means). With
  // micro = B it is forward() then backward(). The gradient-ready callback fires only in the last
  // pass, when the buffer is final. Like backward(), it accumulates: zero_grad() first.
  Status forward_backward(const int32_t* inputs, const int32_t* targets, int B, int T, int micro,
                          double* mean_loss);
  // Called by backward() (when set) each time grads()[first, num_parameters()) holds its final
  // values: after the final LayerNorm, after each block (top block first), and with first = 0 after
  // the embeddings (the tied token embedding also receives the LM head's gradient, so it is final
  // only then). The backend's queued work may still be running: a caller that reads the buffer
  // from another stream or the host synchronizes first. An error stops the backward pass.
  using GradientReadyFn = std::function<Status(size_t first)>;
  void set_gradient_ready(GradientReadyFn fn) { gradient_ready_ = std::move(fn); }
  // Logits of position t of sequence b of the last forward (targets null), first `vocab` entries.
  Status copy_logits(int b, int t, std::vector<float>* out) const;

 private:
  struct Slot {
    size_t offset = 0;     // bytes into act_
    size_t per_layer = 0;  // elements per layer
    kernels::DType dtype = kernels::DType::kF32;
    size_t layer_bytes = 0;  // stride between layers: per_layer elements rounded up to 256 bytes
  };
  struct Acts;  // the slots of every tensor in act_
  // forward(); refresh_weights false: the backend's weight cache still holds these parameters
  // (forward_backward's later passes).
  Status forward_pass(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss,
                      int64_t grad_positions, bool refresh_weights);
  kernels::Act act(const Slot& s, int layer = 0) const;
  float* f32(const Slot& s, int layer = 0) const;  // an fp32 slot
  kernels::Act dlogits(const Acts& a) const;       // where the forward leaves the logits' gradient

  GptShape shape_;
  ParameterTable table_;
  kernels::Backend* backend_ = nullptr;
  int max_batch_ = 0;
  int max_seq_ = 0;
  int last_B_ = 0;
  int last_T_ = 0;
  bool last_has_targets_ = false;
  bool logits_valid_ = false;  // the logits buffer holds the last forward's logits
  bool ready_calls_ = true;    // backward() calls gradient_ready_ (not in forward_backward's early passes)

  float* params_ = nullptr;
  float* grads_ = nullptr;
  float* m_ = nullptr;
  float* v_ = nullptr;
  unsigned char* act_ = nullptr;  // activations + backward scratch, one allocation
  size_t act_bytes_ = 0;
  kernels::DType act_dtype_ = kernels::DType::kF32;
  kernels::DType logits_dtype_ = kernels::DType::kF32;
  bool recompute_ = false;      // the backward re-runs each block's forward (init's `recompute`)
  int32_t* tokens_ = nullptr;   // [max_batch * max_seq] inputs on the backend
  int32_t* targets_ = nullptr;  // [max_batch * max_seq]
  std::vector<float> host_losses_;
  GradientReadyFn gradient_ready_;
};

}  // namespace perigee::runtime
