#include "runtime/fault_ladder.hpp"

#include <cmath>
#include <cstring>
#include <map>

namespace perigee::runtime {
namespace {

double mean_of(const std::deque<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

InvariantVerdict StepInvariants::check(double loss, double grad_norm) const {
  if (!std::isfinite(loss)) return {true, str_cat("loss is ", loss)};
  if (!std::isfinite(grad_norm)) return {true, str_cat("gradient norm is ", grad_norm)};
  const size_t warm = std::max<size_t>(1, window_ / 2);
  if (losses_.size() < warm) return {};
  const double lm = mean_of(losses_), gm = mean_of(norms_);
  if (loss_spike_ > 0 && loss > loss_spike_ * lm) {
    return {true, str_cat("loss ", loss, " > ", loss_spike_, " x window mean ", lm)};
  }
  if (grad_spike_ > 0 && grad_norm > grad_spike_ * gm) {
    return {true, str_cat("gradient norm ", grad_norm, " > ", grad_spike_, " x window mean ", gm)};
  }
  return {};
}

void StepInvariants::accept(double loss, double grad_norm) {
  losses_.push_back(loss);
  norms_.push_back(grad_norm);
  while (losses_.size() > window_) {
    losses_.pop_front();
    norms_.pop_front();
  }
}

InvariantWindow StepInvariants::window() const {
  return {std::vector<double>(losses_.begin(), losses_.end()),
          std::vector<double>(norms_.begin(), norms_.end())};
}

Status check_invariant_window(const InvariantWindow& w) {
  PERIGEE_REQUIRE(w.losses.size() == w.grad_norms.size(), StatusCode::kInvalidArgument,
                  "invariant window: ", w.losses.size(), " losses but ", w.grad_norms.size(),
                  " gradient norms");
  for (size_t i = 0; i < w.losses.size(); ++i)
    PERIGEE_REQUIRE(std::isfinite(w.losses[i]) && std::isfinite(w.grad_norms[i]),
                    StatusCode::kInvalidArgument, "invariant window: step ", i, " of ", w.losses.size(),
                    " is not finite (loss ", w.losses[i], ", gradient norm ", w.grad_norms[i], ")");
  return Status::ok();
}

Status StepInvariants::restore(const InvariantWindow& w) {
  PERIGEE_CHECK(check_invariant_window(w));
  const size_t skip = w.losses.size() > window_ ? w.losses.size() - window_ : 0;
  losses_.assign(w.losses.begin() + skip, w.losses.end());
  norms_.assign(w.grad_norms.begin() + skip, w.grad_norms.end());
  return Status::ok();
}

uint64_t buffer_digest(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed ^ (0x9E3779B97F4A7C15ull * (bytes + 1));
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h ^= w * 0xBF58476D1CE4E5B9ull;
    h = (h << 27 | h >> 37) * 0x94D049BB133111EBull;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  return h ^ (h >> 31);
}

Status check_and_repair_replicas(collectives::Communicator& comm, GptModel& model, ReplicaCheck* out) {
  using collectives::DataType;
  *out = ReplicaCheck{};
  const size_t n = model.num_parameters();
  float* buffers[3] = {model.params(), model.adam_m(), model.adam_v()};
  std::vector<float> host(n);
  uint64_t digest = 0;
  for (float* b : buffers) {
    PERIGEE_CHECK(model.backend()->copy_to_host(host.data(), b, n * sizeof(float)));
    digest = buffer_digest(host.data(), n * sizeof(float), digest);
  }
  const int world = comm.size();
  if (world == 1) return Status::ok();
  std::vector<int64_t> all(world);
  const int64_t mine = static_cast<int64_t>(digest);
  PERIGEE_CHECK(comm.all_gather(&mine, all.data(), 1, DataType::kInt64));
  std::map<int64_t, int> votes;
  for (int64_t d : all) ++votes[d];
  if (votes.size() == 1) return Status::ok();
  out->consistent = false;
  int64_t best = 0;
  int best_votes = 0;
  for (auto [d, v] : votes) {
    if (v > best_votes) best = d, best_votes = v;
  }
  if (2 * best_votes <= world) {  // no strict majority: nobody can be trusted
    out->needs_rollback = true;
    for (int r = 0; r < world; ++r) out->minority.push_back(r);
    return Status::ok();
  }
  for (int r = 0; r < world; ++r) {
    if (all[r] != best) out->minority.push_back(r);
    if (all[r] == best && out->source < 0) out->source = r;
  }
  // Every rank joins the broadcasts; only the minority takes the received state.
  const bool repair_me = all[comm.rank()] != best;
  for (float* b : buffers) {
    if (comm.rank() == out->source)
      PERIGEE_CHECK(model.backend()->copy_to_host(host.data(), b, n * sizeof(float)));
    PERIGEE_CHECK(comm.broadcast(host.data(), n, DataType::kFloat32, out->source));
    if (repair_me) PERIGEE_CHECK(model.backend()->copy_to_device(b, host.data(), n * sizeof(float)));
  }
  return Status::ok();
}

}  // namespace perigee::runtime
