// Outage windows and set-up delay on top of a kind's raw link geometry (see link_model.hpp).
#include "collectives/links/link_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace perigee::collectives::links {

namespace {
constexpr double kMaxSampleStepS = 1.0;
}  // namespace

int LinkModelTopology::add_link(int a, int b) {
  ends_.emplace_back(a, b);
  outages_.emplace_back();
  return static_cast<int>(ends_.size()) - 1;
}

int LinkModelTopology::find_link(int a, int b) const {
  for (size_t i = 0; i < ends_.size(); ++i) {
    const auto& e = ends_[i];
    if ((e.first == a && e.second == b) || (e.first == b && e.second == a)) return static_cast<int>(i);
  }
  return -1;
}

Status LinkModelTopology::set_rules(double setup_delay_s, const std::vector<Outage>& outages) {
  PERIGEE_REQUIRE(std::isfinite(setup_delay_s) && setup_delay_s >= 0.0, StatusCode::kInvalidArgument,
                  "links: setup_delay_s must be >= 0 (got ", setup_delay_s, ")");
  setup_delay_s_ = setup_delay_s;
  for (auto& o : outages_) o.clear();
  rule_changes_.clear();
  for (size_t k = 0; k < outages.size(); ++k) {
    const Outage& o = outages[k];
    PERIGEE_REQUIRE(o.end_s >= o.start_s, StatusCode::kInvalidArgument, "links: outage ", k, " (", o.a, "-",
                    o.b, ") ends before it starts (", o.start_s, " > ", o.end_s, ")");
    const int i = find_link(o.a, o.b);
    PERIGEE_REQUIRE(i >= 0, StatusCode::kInvalidArgument, "links: outage ", k, " names satellites ", o.a,
                    " and ", o.b, ", which no link joins in ", name());
    outages_[i].push_back(o);
    rule_changes_.push_back(o.start_s);
    rule_changes_.push_back(o.end_s + setup_delay_s_);
  }
  std::sort(rule_changes_.begin(), rule_changes_.end());
  return Status::ok();
}

double LinkModelTopology::last_rule_change_s(double t_s) const {
  const auto it = std::upper_bound(rule_changes_.begin(), rule_changes_.end(), t_s);
  return it == rule_changes_.begin() ? -std::numeric_limits<double>::infinity() : *std::prev(it);
}

// True when an outage of link i covers some instant of [from_s, to_s].
bool LinkModelTopology::in_outage(int i, double from_s, double to_s, const Outage** which) const {
  for (const Outage& o : outages_[i]) {
    if (o.start_s <= to_s && o.end_s > from_s) {
      if (which) *which = &o;
      return true;
    }
  }
  return false;
}

LinkState LinkModelTopology::link(int i, double t_s) const {
  LinkState s = raw_link(i, t_s);
  if (!s.up) return s;
  if (in_outage(i, t_s - setup_delay_s_, t_s, nullptr)) {
    s.up = false;
    return s;
  }
  if (setup_delay_s_ > 0.0 && !is_static()) {
    const int steps = static_cast<int>(std::ceil(setup_delay_s_ / kMaxSampleStepS));
    for (int k = 1; k <= steps; ++k) {
      const double back = std::min(setup_delay_s_, k * kMaxSampleStepS);
      if (!raw_link(i, t_s - back).up) {
        s.up = false;
        return s;
      }
    }
  }
  return s;
}

std::string LinkModelTopology::down_reason(int i, double t_s) const {
  if (!raw_link(i, t_s).up) return raw_down_reason(i, t_s);
  const Outage* o = nullptr;
  if (in_outage(i, t_s, t_s, &o)) return str_cat("outage [", o->start_s, ", ", o->end_s, ") s");
  if (in_outage(i, t_s - setup_delay_s_, t_s, &o)) {
    return str_cat("setting up after outage [", o->start_s, ", ", o->end_s,
                   ") s until t=", o->end_s + setup_delay_s_, " s");
  }
  if (!link(i, t_s).up) return str_cat("setting up (available again less than ", setup_delay_s_, " s ago)");
  return "up";
}

}  // namespace perigee::collectives::links
