#include "runtime/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace perigee::runtime {

double learning_rate(const TrainConfig& train, int64_t step) {
  const double peak = train.lr;
  const double floor = train.lr * train.min_lr_ratio;
  if (step < train.warmup_steps)
    return peak * static_cast<double>(step + 1) / static_cast<double>(train.warmup_steps);
  const int64_t decay_steps = train.steps - train.warmup_steps;
  // One step after the warmup is the decay's last: the floor (the warmup's last step took the peak).
  // A one-step run without warmup has no schedule: lr.
  if (decay_steps <= 1) return decay_steps == 1 && train.warmup_steps > 0 ? floor : peak;
  const double progress = std::clamp(
      static_cast<double>(step - train.warmup_steps) / static_cast<double>(decay_steps - 1), 0.0, 1.0);
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

Status gradient_norm(GptModel& model, double* norm) {
  double sum = 0.0;
  PERIGEE_CHECK(model.backend()->sum_squares(model.grads(), model.num_parameters(), &sum));
  *norm = std::sqrt(sum);
  return Status::ok();
}

Status optimizer_step(GptModel& model, const TrainConfig& train, int64_t step, UpdateStats* stats,
                      const double* grad_norm, int64_t updates_before) {
  UpdateStats s;
  s.lr = learning_rate(train, step);
  if (grad_norm != nullptr) {
    s.grad_norm = *grad_norm;
  } else {
    PERIGEE_CHECK(gradient_norm(model, &s.grad_norm));
  }
  PERIGEE_REQUIRE(std::isfinite(s.grad_norm), StatusCode::kInternal, "gradient norm is ", s.grad_norm,
                  " at step ", step, ": the update would corrupt the parameters");
  if (train.grad_clip > 0.0 && s.grad_norm > train.grad_clip)
    s.clip_scale = train.grad_clip / (s.grad_norm + 1e-6);

  kernels::AdamWParams hp;
  hp.lr = static_cast<float>(s.lr);
  hp.beta1 = static_cast<float>(train.beta1);
  hp.beta2 = static_cast<float>(train.beta2);
  hp.eps = static_cast<float>(train.eps);
  hp.step = (updates_before >= 0 ? updates_before : step) + 1;
  hp.grad_scale = static_cast<float>(s.clip_scale);
  hp.weight_decay = static_cast<float>(train.weight_decay);
  // One run per stretch of consecutive views with the same decay flag (a handful per block), all in one
  // backend call.
  std::vector<kernels::AdamWRun> runs;
  for (const auto& view : model.table().views()) {
    if (!runs.empty() && runs.back().decay == view.decay &&
        runs.back().offset + runs.back().count == view.offset)
      runs.back().count += view.size;
    else
      runs.push_back({view.offset, view.size, view.decay});
  }
  PERIGEE_CHECK(model.backend()->adamw_update_runs(model.params(), model.grads(), model.adam_m(),
                                                   model.adam_v(), runs, hp));
  if (stats != nullptr) *stats = s;
  return Status::ok();
}

}  // namespace perigee::runtime
