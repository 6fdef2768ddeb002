// Optimizer step for GptModel: learning-rate schedule (linear warmup, then cosine decay to
// lr * min_lr_ratio), global-norm gradient clipping and AdamW with decoupled weight decay on the
// 2-D weights only. Runs on the gradients after they were averaged over ranks, so every replica
// computes the same update.
#pragma once

#include <cstdint>

#include "core/status.hpp"
#include "runtime/config.hpp"
#include "runtime/gpt_model.hpp"

namespace perigee::runtime {

// Learning rate for 0-based step `step` of `train.steps`.
double learning_rate(const TrainConfig& train, int64_t step);

struct UpdateStats {
  double lr = 0.0;
  double grad_norm = 0.0;   // before clipping
  double clip_scale = 1.0;  // factor applied to the gradients (1 = not clipped)
};

// L2 norm of the whole gradient buffer (double accumulation, deterministic).
Status gradient_norm(GptModel& model, double* norm);

// One AdamW update at 0-based step `step` (its learning rate). The bias correction counts updates:
// `updates_before` (those already applied; a caller whose fault ladder skipped steps passes fewer than
// `step`) + 1, or step + 1 when it is negative. `grad_norm`: the gradient norm when the caller already
// has it (else it is computed here).
Status optimizer_step(GptModel& model, const TrainConfig& train, int64_t step, UpdateStats* stats,
                      const double* grad_norm = nullptr, int64_t updates_before = -1);

}  // namespace perigee::runtime
