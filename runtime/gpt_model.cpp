#include "runtime/gpt_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/bf16.hpp"
#include "runtime/random.hpp"

namespace perigee::runtime {

// ---------------------------------------------------------------- parameter table

void ParameterTable::add(std::string name, std::vector<int> shape, bool decay) {
  size_t n = 1;
  for (int d : shape) n *= static_cast<size_t>(d);
  index_.emplace(name, views_.size());
  views_.push_back(TensorView{std::move(name), total_, std::move(shape), n, decay});
  total_ += n;
}

ParameterTable ParameterTable::for_shape(const GptShape& s) {
  ParameterTable t;
  const int C = s.n_embd;
  t.add("wte.weight", {s.padded_vocab, C}, true);
  t.add("wpe.weight", {s.context, C}, true);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = str_cat("h.", l, ".");
    t.add(p + "ln_1.weight", {C}, false);
    t.add(p + "ln_1.bias", {C}, false);
    t.add(p + "attn.c_attn.weight", {3 * C, C}, true);
    t.add(p + "attn.c_attn.bias", {3 * C}, false);
    t.add(p + "attn.c_proj.weight", {C, C}, true);
    t.add(p + "attn.c_proj.bias", {C}, false);
    t.add(p + "ln_2.weight", {C}, false);
    t.add(p + "ln_2.bias", {C}, false);
    t.add(p + "mlp.c_fc.weight", {4 * C, C}, true);
    t.add(p + "mlp.c_fc.bias", {4 * C}, false);
    t.add(p + "mlp.c_proj.weight", {C, 4 * C}, true);
    t.add(p + "mlp.c_proj.bias", {C}, false);
  }
  t.add("ln_f.weight", {C}, false);
  t.add("ln_f.bias", {C}, false);
  return t;
}

const TensorView* ParameterTable::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &views_[it->second];
}

// ---------------------------------------------------------------- activation layout

// Where every activation and scratch tensor lives inside act_ (byte offsets), sized for the maximum
// (B, T); a smaller forward uses the leading part of each tensor. Per-layer tensors have a fixed
// per-layer stride. With bf16 activations the tensors marked `op` are bf16: the GEMM operands (the
// LayerNorm, attention and GELU outputs and the gradients entering the attention, c_fc and LM head
// GEMMs), attention's input qkv (the c_attn GEMM's output, whose bits the bf16 attention stages as
// they are) and GELU's input and its gradient (the c_fc GEMM's output fch, and d_fch, which
// matmul_backward_gelu writes: the c_proj GEMM's dinp carried through GELU, in place or in a cuBLASLt
// DGELU epilogue). The rest (the residual stream and its gradient, the c_proj outputs added
// to it, statistics) stay fp32. The logits are fp32, or bf16 ([device] logits, with bf16 activations:
// the LM head's GEMM rounds them once, the cross-entropy widens them).
// The logits' gradient (of the GEMM-operand type) is written over the logits when both have one type,
// else into dlogits of its own (bf16 cannot overwrite fp32 rows in place).
struct GptModel::Acts {
  Slot encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, residual2, ln2, ln2_mean, ln2_rstd, fch, fch_gelu,
      residual3, lnf, lnf_mean, lnf_rstd, logits, dlogits, losses;
  // backward scratch
  Slot d_residual, d_ln, d_qkv, d_atty, d_fch, tmp;
  size_t total = 0;                // bytes
  bool shares_logits = false;      // the scratch lies inside the logits (see below)
  bool dlogits_in_logits = false;  // the logits' gradient overwrites the logits

  Acts(const GptShape& sh, const kernels::Backend& backend, int max_b, int max_t, kernels::DType op,
       kernels::DType lg, bool recompute) {
    const size_t N = static_cast<size_t>(max_b) * max_t;
    const size_t C = sh.n_embd, L = sh.n_layer;
    const size_t nc = N * C;
    const size_t n_att = backend.attention_state_size(max_b, max_t, sh.n_embd, sh.n_head);
    constexpr kernels::DType f32 = kernels::DType::kF32;
    // Every layer's tensor 256-byte aligned: cuBLASLt plans are keyed by pointer alignment, and the
    // CUDA backend's probes (fuses_gelu_gemms, writes_bf16_*) ask about 256-byte aligned tensors.
    auto layer_bytes = [](size_t per_layer, kernels::DType dtype) {
      return (per_layer * kernels::dtype_size(dtype) + 255) / 256 * 256;
    };
    auto take_at = [&layer_bytes](size_t* cursor, size_t per_layer, size_t layers, kernels::DType dtype) {
      const Slot slot{*cursor, per_layer, dtype, layer_bytes(per_layer, dtype)};
      *cursor += slot.layer_bytes * layers;
      return slot;
    };
    auto take = [this, &take_at](size_t per_layer, size_t layers, kernels::DType dtype) {
      return take_at(&total, per_layer, layers, dtype);
    };
    // With recompute, the backward re-runs each block's forward from the block's input (residual3 of
    // the block below): the tensors it recomputes take one layer's memory, shared by every block.
    const size_t RL = recompute ? 1 : L;
    encoded = take(nc, 1, f32);
    ln1 = take(nc, RL, op);
    ln1_mean = take(N, L, f32);
    ln1_rstd = take(N, L, f32);
    qkv = take(3 * nc, RL, op);
    atty = take(nc, RL, op);
    att = take(n_att, RL, f32);
    residual2 = take(nc, L, f32);
    ln2 = take(nc, RL, op);
    ln2_mean = take(N, L, f32);
    ln2_rstd = take(N, L, f32);
    fch = take(4 * nc, RL, op);
    fch_gelu = take(4 * nc, RL, op);
    residual3 = take(nc, L, f32);
    lnf = take(nc, 1, op);
    lnf_mean = take(N, 1, f32);
    lnf_rstd = take(N, 1, f32);
    dlogits_in_logits = op == lg;
    logits = take(N * sh.padded_vocab, 1, lg);
    dlogits = take(dlogits_in_logits ? 0 : N * sh.padded_vocab, 1, op);
    losses = take(N, 1, f32);
    // The backward scratch and the forward's tmp (dead before the LM head writes the logits) go into
    // the logits when they fit: once the LM head's backward has read the logits' gradient, the logits
    // are dead. When that gradient sits in the logits, d_ln (which the LM head's backward writes while
    // reading it) keeps its own memory; when it has its own buffer, d_ln shares too.
    const bool d_ln_shares = !dlogits_in_logits;
    const size_t scratch = layer_bytes(nc, f32) * (d_ln_shares ? 3 : 2) + layer_bytes(3 * nc, op) +
                           layer_bytes(4 * nc, op) + layer_bytes(nc, f32);
    shares_logits = scratch <= layer_bytes(N * sh.padded_vocab, lg);
    size_t shared = logits.offset;
    size_t* cursor = shares_logits ? &shared : &total;
    d_residual = take_at(cursor, nc, 1, f32);
    d_ln = take_at(d_ln_shares ? cursor : &total, nc, 1, f32);
    d_qkv = take_at(cursor, 3 * nc, 1, op);
    d_atty = take_at(cursor, nc, 1, f32);
    d_fch = take_at(cursor, 4 * nc, 1, op);
    tmp = take_at(cursor, nc, 1, f32);
  }
};

kernels::Act GptModel::act(const Slot& s, int layer) const {
  return kernels::Act(act_ + s.offset + static_cast<size_t>(layer) * s.layer_bytes, s.dtype);
}

float* GptModel::f32(const Slot& s, int layer) const {
  return act(s, layer).f32();  // null for a bf16 slot: the op's pointer check then names it
}

kernels::Act GptModel::dlogits(const Acts& a) const {
  return a.dlogits_in_logits ? act(a.logits) : act(a.dlogits);
}

// ---------------------------------------------------------------- lifetime

GptModel::~GptModel() {
  if (backend_ == nullptr) return;
  backend_->release_weight_cache(params_);
  for (void* p : {static_cast<void*>(params_), static_cast<void*>(grads_), static_cast<void*>(m_),
                  static_cast<void*>(v_), static_cast<void*>(act_), static_cast<void*>(tokens_),
                  static_cast<void*>(targets_)}) {
    if (p != nullptr) backend_->release(p);
  }
}

std::vector<MemoryItem> GptModel::memory_items(const GptShape& shape, const kernels::Backend& backend,
                                               int max_batch, int max_seq, kernels::DType activations,
                                               kernels::DType logits, bool recompute, bool accumulates) {
  // An upper bound in double first: the exact layout below computes in size_t.
  const double N = static_cast<double>(max_batch) * max_seq, C = shape.n_embd, L = shape.n_layer;
  const double rough = 8.0 * N * (C * (16.0 * L + 8.0) + 2.0 * shape.padded_vocab) +
                       4.0 * L * max_batch * shape.n_head * static_cast<double>(max_seq) * max_seq;
  if (rough > 0x1p60) {
    return {{str_cat("activations for ", max_batch, " x ", max_seq, " tokens (rough estimate)"),
             rough >= 0x1p64 ? UINT64_MAX : static_cast<uint64_t>(rough), true}};
  }
  const size_t n = ParameterTable::for_shape(shape).total();
  const uint64_t ntok = static_cast<uint64_t>(max_batch) * max_seq * sizeof(int32_t);
  const char* storage = activations == kernels::DType::kBF16 ? "bf16 GEMM operands" : "fp32";
  std::vector<MemoryItem> items = {
      {str_cat("parameters, gradients, AdamW m and v (4 x ", n, " fp32)"), 4 * n * sizeof(float)},
      {str_cat("activations for ", max_batch, " x ", max_seq, " tokens (", storage,
               recompute ? ", recompute" : "", ")"),
       Acts(shape, backend, max_batch, max_seq, activations, logits, recompute).total, true},
      {"input and target tokens", 2 * ntok}};
  const uint64_t overhead = backend.model_overhead_bytes(n);
  if (overhead > 0)
    items.push_back({str_cat(backend.name(), " backend's own copies (bf16 weight cache)"), overhead});
  // A backend that cannot size its working memory (a CUDA error) fails the same way in init().
  uint64_t working = 0;
  const auto calls = working_calls(shape, max_batch, max_seq, activations, logits, accumulates);
  if (backend.working_memory_bytes(calls, &working).is_ok() && working > 0)
    items.push_back(
        {str_cat(backend.name(), " backend's working memory (its largest op's temporaries)"), working, true});
  return items;
}

std::vector<kernels::OpCall> GptModel::working_calls(const GptShape& shape, int batch, int seq,
                                                     kernels::DType activations, kernels::DType logits,
                                                     bool accumulates) {
  using kernels::OpCall;
  constexpr kernels::DType f32 = kernels::DType::kF32;
  const kernels::DType op = activations;  // the GEMM operands, d_qkv, d_fch and the logits' gradient
  const int N = batch * seq, C = shape.n_embd, Vp = shape.padded_vocab;
  const bool acc = accumulates;
  return {
      // forward: c_attn, attention, its c_proj (into fp32 tmp), c_fc (+ GELU), the MLP's c_proj, LM head
      OpCall::matmul_forward(N, C, 3 * C, op, op, true),
      OpCall::attention_forward(batch, seq, C, shape.n_head, op, op),
      OpCall::matmul_forward(N, C, C, op, f32, true),
      OpCall::matmul_forward(N, C, 4 * C, op, op, true),
      OpCall::gelu_forward(static_cast<size_t>(N) * 4 * C, op, op),
      OpCall::matmul_forward(N, 4 * C, C, op, f32, true),
      OpCall::matmul_forward(N, C, Vp, op, logits, false),
      // backward, in its order
      OpCall::matmul_backward(N, C, Vp, f32, op, op, true, true, false, acc),
      OpCall::layernorm_backward(N, C),
      OpCall::matmul_backward(N, 4 * C, C, op, f32, op, true, true, true, acc),
      OpCall::gelu_backward(static_cast<size_t>(N) * 4 * C, op, op, op),  // in place over d_fch
      OpCall::matmul_backward(N, C, 4 * C, f32, op, op, true, true, true, acc),
      OpCall::matmul_backward(N, C, C, f32, f32, op, true, true, true, acc),
      OpCall::attention_backward(batch, seq, C, shape.n_head, op, f32, op),
      OpCall::matmul_backward(N, C, 3 * C, f32, op, op, true, true, true, acc),
      OpCall::encoder_backward(batch, seq, C),
      // the optimizer's gradient norm
      OpCall::sum_squares(ParameterTable::for_shape(shape).total()),
  };
}

Status GptModel::init(const GptShape& shape, kernels::Backend* backend, int max_batch, int max_seq,
                      kernels::DType activations, kernels::DType logits, bool recompute) {
  PERIGEE_REQUIRE(backend_ == nullptr, StatusCode::kInternal, "GptModel::init called twice");
  PERIGEE_REQUIRE(
      shape.n_layer > 0 && shape.n_head > 0 && shape.n_embd > 0 && shape.context > 0 && shape.vocab > 0,
      StatusCode::kInvalidArgument, "bad model shape: layers ", shape.n_layer, ", heads ", shape.n_head,
      ", channels ", shape.n_embd, ", context ", shape.context, ", vocab ", shape.vocab,
      " (each must be at least 1)");
  PERIGEE_REQUIRE(shape.n_embd % shape.n_head == 0, StatusCode::kInvalidArgument,
                  "bad model shape: ", shape.n_embd, " channels do not split into ", shape.n_head,
                  " heads (the channels must be a multiple of the heads)");
  PERIGEE_REQUIRE(shape.padded_vocab >= shape.vocab, StatusCode::kInvalidArgument,
                  "bad model shape: padded vocab ", shape.padded_vocab, " is smaller than the vocab ",
                  shape.vocab);
  PERIGEE_REQUIRE(max_batch > 0 && max_seq > 0 && max_seq <= shape.context &&
                      static_cast<int64_t>(max_batch) * max_seq <= std::numeric_limits<int32_t>::max(),
                  StatusCode::kInvalidArgument, "bad activation size: batch ", max_batch, ", seq ", max_seq,
                  " (context ", shape.context, "; batch x seq must be at most 2^31 - 1 tokens)");
  PERIGEE_REQUIRE(logits == kernels::DType::kF32 || activations == kernels::DType::kBF16,
                  StatusCode::kInvalidArgument,
                  "bf16 logits need bf16 activations (the logits' gradient, of the "
                  "activations' type, overwrites them)");
  shape_ = shape;
  table_ = ParameterTable::for_shape(shape);
  backend_ = backend;
  max_batch_ = max_batch;
  max_seq_ = max_seq;
  act_dtype_ = activations;
  logits_dtype_ = logits;
  recompute_ = recompute;
  const size_t np = table_.total() * sizeof(float);
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&params_), np));
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&grads_), np));
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&m_), np));
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&v_), np));
  act_bytes_ = Acts(shape_, *backend_, max_batch, max_seq, act_dtype_, logits_dtype_, recompute_).total;
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&act_), act_bytes_));
  const size_t ntok = static_cast<size_t>(max_batch) * max_seq * sizeof(int32_t);
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&tokens_), ntok));
  PERIGEE_CHECK(backend_->allocate(reinterpret_cast<void**>(&targets_), ntok));
  PERIGEE_CHECK(
      backend_->reserve_working_memory(working_calls(shape_, max_batch, max_seq, act_dtype_, logits_dtype_)));
  return Status::ok();
}

Status GptModel::init_parameters(uint64_t seed) {
  PERIGEE_REQUIRE(params_ != nullptr, StatusCode::kInternal, "init_parameters before init");
  std::vector<float> host(table_.total(), 0.0f);
  SplitMix64 rng(seed);
  const float residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(shape_.n_layer));
  for (const auto& v : table_.views()) {
    float* p = host.data() + v.offset;
    const bool is_ln_weight = v.name.find("ln_") != std::string::npos && v.name.ends_with(".weight");
    if (is_ln_weight) {
      std::fill(p, p + v.size, 1.0f);
    } else if (v.shape.size() >= 2) {
      const bool residual_proj = v.name.ends_with("c_proj.weight");
      const float std_dev = residual_proj ? residual_std : 0.02f;
      size_t n = v.size;
      if (v.name == "wte.weight") n = static_cast<size_t>(shape_.vocab) * shape_.n_embd;  // pad rows stay 0
      for (size_t i = 0; i < n; ++i) p[i] = static_cast<float>(rng.normal()) * std_dev;
    }
    // biases stay zero
  }
  PERIGEE_CHECK(set_parameters(host));
  const size_t bytes = table_.total() * sizeof(float);
  PERIGEE_CHECK(backend_->memset_zero(m_, bytes));
  PERIGEE_CHECK(backend_->memset_zero(v_, bytes));
  PERIGEE_CHECK(backend_->memset_zero(grads_, bytes));
  return Status::ok();
}

Status GptModel::get_parameters(std::vector<float>* host) const {
  host->resize(table_.total());
  return backend_->copy_to_host(host->data(), params_, table_.total() * sizeof(float));
}

Status GptModel::set_parameters(const std::vector<float>& host) {
  PERIGEE_REQUIRE(host.size() == table_.total(), StatusCode::kInvalidArgument, "set_parameters: got ",
                  host.size(), " values, the model has ", table_.total());
  return backend_->copy_to_device(params_, host.data(), table_.total() * sizeof(float));
}

// ---------------------------------------------------------------- forward

Status GptModel::forward(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss,
                         int64_t grad_positions) {
  return forward_pass(inputs, targets, B, T, mean_loss, grad_positions, true);
}

Status GptModel::evaluate(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss) {
  PERIGEE_REQUIRE(targets != nullptr, StatusCode::kInvalidArgument, "evaluate needs targets");
  const Status s = forward_pass(inputs, targets, B, T, mean_loss, 0, true);
  last_has_targets_ = false;
  PERIGEE_CHECK(s);
  return Status::ok();
}

Status GptModel::forward_pass(const int32_t* inputs, const int32_t* targets, int B, int T, double* mean_loss,
                              int64_t grad_positions, bool refresh_weights) {
  PERIGEE_REQUIRE(act_ != nullptr, StatusCode::kInternal, "forward before init");
  PERIGEE_REQUIRE(B >= 1 && B <= max_batch_ && T >= 1 && T <= max_seq_, StatusCode::kInvalidArgument,
                  "forward: batch ", B, " x seq ", T, " exceeds the allocated ", max_batch_, " x ", max_seq_);
  PERIGEE_REQUIRE(grad_positions == 0 || grad_positions >= static_cast<int64_t>(B) * T,
                  StatusCode::kInvalidArgument, "forward: grad_positions ", grad_positions,
                  " is fewer than the batch's ", static_cast<int64_t>(B) * T, " positions");
  const int V = shape_.vocab;
  for (size_t i = 0, n = static_cast<size_t>(B) * T; i < n; ++i) {
    PERIGEE_REQUIRE(inputs[i] >= 0 && inputs[i] < V, StatusCode::kInvalidArgument, "forward: input token ",
                    inputs[i], " at position ", i, " outside the vocabulary [0, ", V, ")");
    PERIGEE_REQUIRE(targets == nullptr || (targets[i] >= 0 && targets[i] < V), StatusCode::kInvalidArgument,
                    "forward: target token ", targets[i], " at position ", i, " outside [0, ", V, ")");
  }
  // From here on the buffers hold the last pass's state no longer; this pass's once it completes.
  last_has_targets_ = false;
  logits_valid_ = false;
  kernels::Backend& k = *backend_;
  // The parameters may have changed since the last pass (an optimizer step, a load): the backend's
  // weight cache, where it keeps one, is made again (forward_backward's later passes share it).
  if (refresh_weights) PERIGEE_CHECK(k.refresh_weight_cache(params_, table_.total()));
  const Acts a(shape_, *backend_, max_batch_, max_seq_, act_dtype_, logits_dtype_, recompute_);
  const int C = shape_.n_embd, NH = shape_.n_head, L = shape_.n_layer, Vp = shape_.padded_vocab;
  const int N = B * T;
  const size_t ntok = static_cast<size_t>(N) * sizeof(int32_t);
  PERIGEE_CHECK(k.copy_to_device(tokens_, inputs, ntok));
  if (targets != nullptr) PERIGEE_CHECK(k.copy_to_device(targets_, targets, ntok));

  auto P = [this](const std::string& name) { return params_ + table_.find(name)->offset; };
  PERIGEE_CHECK(
      k.encoder_forward(f32(a.encoded), tokens_, P("wte.weight"), P("wpe.weight"), B, T, C, shape_.vocab));
  // Each residual add is fused with the LayerNorm that reads its sum (ln_2 of the layer, then ln_1 of the
  // next layer or ln_f): Backend::residual_layernorm_forward, the same bits as the two ops.
  const float* residual = f32(a.encoded);
  PERIGEE_CHECK(k.layernorm_forward(act(a.ln1, 0), f32(a.ln1_mean, 0), f32(a.ln1_rstd, 0), residual,
                                    P("h.0.ln_1.weight"), P("h.0.ln_1.bias"), N, C));
  for (int l = 0; l < L; ++l) {
    const std::string p = str_cat("h.", l, ".");
    const int r = recompute_ ? 0 : l;  // the layer of the tensors the backward may recompute
    const kernels::Act ln1 = act(a.ln1, r), atty = act(a.atty, r), ln2 = act(a.ln2, r);
    const kernels::Act qkv = act(a.qkv, r), fch = act(a.fch, r), fch_gelu = act(a.fch_gelu, r);
    float* residual2 = f32(a.residual2, l);
    float* residual3 = f32(a.residual3, l);
    float* tmp = f32(a.tmp);

    PERIGEE_CHECK(
        k.matmul_forward(qkv, ln1, P(p + "attn.c_attn.weight"), P(p + "attn.c_attn.bias"), N, C, 3 * C));
    PERIGEE_CHECK(k.attention_forward(atty, f32(a.att, r), qkv, B, T, C, NH));
    PERIGEE_CHECK(
        k.matmul_forward(tmp, atty, P(p + "attn.c_proj.weight"), P(p + "attn.c_proj.bias"), N, C, C));
    PERIGEE_CHECK(k.residual_layernorm_forward(residual2, ln2, f32(a.ln2_mean, l), f32(a.ln2_rstd, l),
                                               residual, tmp, P(p + "ln_2.weight"), P(p + "ln_2.bias"), N,
                                               C));
    PERIGEE_CHECK(k.matmul_gelu_forward(fch, fch_gelu, ln2, P(p + "mlp.c_fc.weight"), P(p + "mlp.c_fc.bias"),
                                        N, C, 4 * C));
    PERIGEE_CHECK(
        k.matmul_forward(tmp, fch_gelu, P(p + "mlp.c_proj.weight"), P(p + "mlp.c_proj.bias"), N, 4 * C, C));
    if (l + 1 < L) {
      const std::string next = str_cat("h.", l + 1, ".");
      PERIGEE_CHECK(k.residual_layernorm_forward(residual3, act(a.ln1, recompute_ ? 0 : l + 1),
                                                 f32(a.ln1_mean, l + 1), f32(a.ln1_rstd, l + 1), residual2,
                                                 tmp, P(next + "ln_1.weight"), P(next + "ln_1.bias"), N, C));
    } else {
      PERIGEE_CHECK(k.residual_layernorm_forward(residual3, act(a.lnf), f32(a.lnf_mean), f32(a.lnf_rstd),
                                                 residual2, tmp, P("ln_f.weight"), P("ln_f.bias"), N, C));
    }
    residual = residual3;
  }
  PERIGEE_CHECK(k.matmul_forward(act(a.logits), act(a.lnf), P("wte.weight"), nullptr, N, C, Vp));
  last_B_ = B;
  last_T_ = T;
  if (targets == nullptr) {
    logits_valid_ = true;  // with targets their gradient (and then scratch) replaces them
    return Status::ok();
  }

  // The loss and, in place of the logits, their gradient for backward() (of the mean loss): one pass over
  // the [N, Vp] logits instead of a forward writing probabilities and a backward reading them again.
  const float scale = 1.0f / static_cast<float>(grad_positions > 0 ? grad_positions : N);
  PERIGEE_CHECK(
      k.crossentropy_forward_backward(f32(a.losses), dlogits(a), act(a.logits), targets_, scale, N, V, Vp));
  host_losses_.resize(N);
  PERIGEE_CHECK(k.copy_to_host(host_losses_.data(), f32(a.losses), N * sizeof(float)));
  double sum = 0.0;
  for (float x : host_losses_) sum += x;
  if (mean_loss != nullptr) *mean_loss = sum / N;
  last_has_targets_ = true;
  return Status::ok();
}

Status GptModel::copy_logits(int b, int t, std::vector<float>* out) const {
  PERIGEE_REQUIRE(logits_valid_ && b < last_B_ && t < last_T_, StatusCode::kInternal,
                  "copy_logits needs a forward without targets covering (", b, ", ", t, ")");
  const Acts a(shape_, *backend_, max_batch_, max_seq_, act_dtype_, logits_dtype_, recompute_);
  out->resize(shape_.vocab);
  const size_t row = static_cast<size_t>(b) * last_T_ + t;
  const kernels::Act logits = act(a.logits);
  if (logits.is_f32()) {
    return backend_->copy_to_host(out->data(), logits.f32() + row * shape_.padded_vocab,
                                  shape_.vocab * sizeof(float));
  }
  std::vector<uint16_t> bits(shape_.vocab);
  PERIGEE_CHECK(backend_->copy_to_host(bits.data(), logits.bf16() + row * shape_.padded_vocab,
                                       shape_.vocab * sizeof(uint16_t)));
  std::transform(bits.begin(), bits.end(), out->begin(), bf16_to_float);
  return Status::ok();
}

// ---------------------------------------------------------------- backward

Status GptModel::zero_grad() {
  return backend_->memset_zero(grads_, table_.total() * sizeof(float));
}

Status GptModel::backward() {
  PERIGEE_REQUIRE(last_has_targets_, StatusCode::kInternal,
                  "backward needs a completed forward() with targets first (not evaluate(), nor a second "
                  "backward of one forward)");
  kernels::Backend& k = *backend_;  // the forward's weight cache still holds: the weights are those it read
  const Acts a(shape_, *backend_, max_batch_, max_seq_, act_dtype_, logits_dtype_, recompute_);
  const int B = last_B_, T = last_T_, N = B * T;
  const int C = shape_.n_embd, NH = shape_.n_head, L = shape_.n_layer, Vp = shape_.padded_vocab;
  const size_t nc = static_cast<size_t>(N) * C;
  auto P = [this](const std::string& name) { return params_ + table_.find(name)->offset; };
  auto G = [this](const std::string& name) { return grads_ + table_.find(name)->offset; };
  auto zero = [&k](float* p, size_t n) { return k.memset_zero(p, n * sizeof(float)); };
  auto final_from = [this](const std::string& name) {
    return gradient_ready_ && ready_calls_ ? gradient_ready_(table_.find(name)->offset) : Status::ok();
  };

  float* d_residual = f32(a.d_residual);
  float* d_ln = f32(a.d_ln);
  // The forward with targets left dlogits of the mean loss (in the logits buffer when of one type).
  const kernels::ConstAct dlogits = this->dlogits(a);
  // Input gradients of matmul, GELU and attention are written; only the residual stream's gradient
  // (layernorm_backward's dinp, where two branches meet) accumulates and starts from zero.
  PERIGEE_CHECK(
      k.matmul_backward(d_ln, G("wte.weight"), nullptr, dlogits, act(a.lnf), P("wte.weight"), N, C, Vp));
  PERIGEE_CHECK(zero(d_residual, nc));
  const float* last_residual = L > 0 ? f32(a.residual3, L - 1) : f32(a.encoded);
  PERIGEE_CHECK(k.layernorm_backward(d_residual, G("ln_f.weight"), G("ln_f.bias"), d_ln, last_residual,
                                     P("ln_f.weight"), f32(a.lnf_mean), f32(a.lnf_rstd), N, C));
  PERIGEE_CHECK(final_from("ln_f.weight"));

  const kernels::Act d_qkv = act(a.d_qkv), d_fch = act(a.d_fch);
  float* d_atty = f32(a.d_atty);
  for (int l = L - 1; l >= 0; --l) {
    const std::string p = str_cat("h.", l, ".");
    const float* residual = l == 0 ? f32(a.encoded) : f32(a.residual3, l - 1);
    const int r = recompute_ ? 0 : l;
    const kernels::Act ln1 = act(a.ln1, r), atty = act(a.atty, r), ln2 = act(a.ln2, r);
    const kernels::Act qkv = act(a.qkv, r), fch = act(a.fch, r), fch_gelu = act(a.fch_gelu, r);
    const float* residual2 = f32(a.residual2, l);
    if (recompute_) {
      // The block's forward again, from its input and residual2, with the same ops on the same values:
      // the same bits as the forward's (layernorm_forward equals the fused residual + LayerNorm it ran).
      // The c_proj outputs are not needed: residual2 and the statistics are kept for every layer.
      PERIGEE_CHECK(k.layernorm_forward(ln1, f32(a.ln1_mean, l), f32(a.ln1_rstd, l), residual,
                                        P(p + "ln_1.weight"), P(p + "ln_1.bias"), N, C));
      PERIGEE_CHECK(
          k.matmul_forward(qkv, ln1, P(p + "attn.c_attn.weight"), P(p + "attn.c_attn.bias"), N, C, 3 * C));
      PERIGEE_CHECK(k.attention_forward(atty, f32(a.att, r), qkv, B, T, C, NH));
      PERIGEE_CHECK(k.layernorm_forward(ln2, f32(a.ln2_mean, l), f32(a.ln2_rstd, l), residual2,
                                        P(p + "ln_2.weight"), P(p + "ln_2.bias"), N, C));
      PERIGEE_CHECK(k.matmul_gelu_forward(fch, fch_gelu, ln2, P(p + "mlp.c_fc.weight"),
                                          P(p + "mlp.c_fc.bias"), N, C, 4 * C));
    }

    // residual3 = residual2 + mlp(ln2(residual2)): d_residual flows to both terms.
    // fch_gelu = gelu(fch): the c_proj backward carries the gradient through GELU into d_fch.
    PERIGEE_CHECK(k.matmul_backward_gelu(d_fch, G(p + "mlp.c_proj.weight"), G(p + "mlp.c_proj.bias"),
                                         d_residual, fch_gelu, P(p + "mlp.c_proj.weight"), fch, N, 4 * C, C));
    PERIGEE_CHECK(k.matmul_backward(d_ln, G(p + "mlp.c_fc.weight"), G(p + "mlp.c_fc.bias"), d_fch, ln2,
                                    P(p + "mlp.c_fc.weight"), N, C, 4 * C));
    PERIGEE_CHECK(k.layernorm_backward(d_residual, G(p + "ln_2.weight"), G(p + "ln_2.bias"), d_ln, residual2,
                                       P(p + "ln_2.weight"), f32(a.ln2_mean, l), f32(a.ln2_rstd, l), N, C));
    // residual2 = residual + attn(ln1(residual)).
    PERIGEE_CHECK(k.matmul_backward(d_atty, G(p + "attn.c_proj.weight"), G(p + "attn.c_proj.bias"),
                                    d_residual, atty, P(p + "attn.c_proj.weight"), N, C, C));
    PERIGEE_CHECK(k.attention_backward(d_qkv, d_atty, qkv, atty, f32(a.att, r), B, T, C, NH));
    PERIGEE_CHECK(k.matmul_backward(d_ln, G(p + "attn.c_attn.weight"), G(p + "attn.c_attn.bias"), d_qkv, ln1,
                                    P(p + "attn.c_attn.weight"), N, C, 3 * C));
    PERIGEE_CHECK(k.layernorm_backward(d_residual, G(p + "ln_1.weight"), G(p + "ln_1.bias"), d_ln, residual,
                                       P(p + "ln_1.weight"), f32(a.ln1_mean, l), f32(a.ln1_rstd, l), N, C));
    PERIGEE_CHECK(final_from(p + "ln_1.weight"));
  }
  PERIGEE_CHECK(
      k.encoder_backward(G("wte.weight"), G("wpe.weight"), d_residual, tokens_, B, T, C, shape_.vocab));
  PERIGEE_CHECK(final_from("wte.weight"));
  last_has_targets_ = false;  // one backward per forward (the gradient buffers accumulate)
  return Status::ok();
}

Status GptModel::forward_backward(const int32_t* inputs, const int32_t* targets, int B, int T, int micro,
                                  double* mean_loss) {
  PERIGEE_REQUIRE(targets != nullptr, StatusCode::kInvalidArgument, "forward_backward needs targets");
  PERIGEE_REQUIRE(micro >= 1 && B >= micro && B % micro == 0, StatusCode::kInvalidArgument,
                  "forward_backward: micro-batch ", micro, " must divide the batch ", B);
  const int passes = B / micro;
  const int64_t positions = static_cast<int64_t>(B) * T;
  const size_t stride = static_cast<size_t>(micro) * T;
  double sum = 0.0;
  for (int p = 0; p < passes; ++p) {
    double loss = 0.0;
    // The weights do not change between the passes: one weight cache serves them all.
    PERIGEE_CHECK(
        forward_pass(inputs + p * stride, targets + p * stride, micro, T, &loss, positions, p == 0));
    ready_calls_ = p + 1 == passes;  // the buffer is final only in the last pass
    const Status s = backward();
    ready_calls_ = true;
    PERIGEE_CHECK(s);
    sum += loss;
  }
  // Equal passes: the mean of their means is the batch's mean (and exactly the one pass's value).
  if (mean_loss != nullptr) *mean_loss = sum / passes;
  return Status::ok();
}

}  // namespace perigee::runtime
