// make_route_fn: rank-to-rank routes over a topology, cached per time bucket (see rank_map.hpp).
// A bucket's snapshot is taken at the bucket's start, floor(t / cache_s) * cache_s, so every caller
// asking about any time in the bucket gets the same answer (cache_s <= 0: at t itself); an outage
// rule that changes a link inside the bucket (an outage's start, its end plus the set-up delay)
// starts a new bucket there, so outages apply at their exact times. The last few snapshots are kept. Ranks on
// one satellite use its intra-satellite switch: the hop leaves through the sending rank's own port, directed
// id 2 * num_links + src rank.
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "collectives/links/rank_map.hpp"
#include "collectives/links/route_snapshot.hpp"

namespace perigee::collectives::links {

namespace {

constexpr size_t kMaxSnapshots = 4;

class RouteCache {
 public:
  RouteCache(std::shared_ptr<const Topology> topo, RankMap map, double cache_s)
      : topo_(std::move(topo)), map_(std::move(map)), cache_s_(cache_s) {}

  Status route(int src, int dst, double t_s, algorithms::Route* out) {
    const int ranks = static_cast<int>(map_.satellite_of_rank.size());
    PERIGEE_REQUIRE(src >= 0 && src < ranks && dst >= 0 && dst < ranks, StatusCode::kInvalidArgument,
                    "route from rank ", src, " to rank ", dst, " at t=", t_s, " s: ranks must be in [0, ",
                    ranks, ")");
    PERIGEE_REQUIRE(std::isfinite(t_s), StatusCode::kInvalidArgument, "route from rank ", src, " to rank ",
                    dst, ": time ", t_s, " is not finite");
    out->hops.clear();
    if (src == dst) return Status::ok();
    const int a = map_.satellite_of_rank[src], b = map_.satellite_of_rank[dst];
    if (a == b) {
      out->hops.push_back(
          algorithms::RouteHop{2 * topo_->num_links() + src, map_.intra_latency_s, map_.intra_bandwidth_Bps});
      return Status::ok();
    }
    std::lock_guard<std::mutex> lock(mu_);
    RouteSnapshot& snap = snapshot(t_s);
    if (snap.path(a, b, &out->hops)) return Status::ok();
    return make_error(StatusCode::kUnavailable, "no route from rank ", src, " (sat ", a, ") to rank ", dst,
                      " (sat ", b, ") at t=", snap.time_s(), " s in ", topo_->name(), ": links down at sat ",
                      a, ": ", snap.down_links_at(a), "; at sat ", b, ": ", snap.down_links_at(b), "; ",
                      snap.num_down(), " of ", topo_->num_links(), " links down");
  }

 private:
  RouteSnapshot& snapshot(double t_s) {
    const double at = cache_s_ > 0.0
                          ? std::max(std::floor(t_s / cache_s_) * cache_s_, topo_->last_rule_change_s(t_s))
                          : t_s;
    if (auto it = snaps_.find(at); it != snaps_.end()) return *it->second;
    if (snaps_.size() >= kMaxSnapshots) {
      // Evict the snapshot farthest in time from the one asked for.
      auto far = snaps_.begin();
      if (std::abs(std::prev(snaps_.end())->first - at) > std::abs(far->first - at))
        far = std::prev(snaps_.end());
      snaps_.erase(far);
    }
    return *snaps_.emplace(at, std::make_unique<RouteSnapshot>(*topo_, at)).first->second;
  }

  std::shared_ptr<const Topology> topo_;
  RankMap map_;
  double cache_s_;
  std::mutex mu_;
  std::map<double, std::unique_ptr<RouteSnapshot>> snaps_;
};

}  // namespace

algorithms::RouteFn make_route_fn(std::shared_ptr<const Topology> topo, RankMap map, double cache_s) {
  auto cache = std::make_shared<RouteCache>(std::move(topo), std::move(map), cache_s);
  return [cache](int src, int dst, double t_s, algorithms::Route* out) {
    return cache->route(src, dst, t_s, out);
  };
}

}  // namespace perigee::collectives::links
