// Two-level all-reduce: nodes of ranks_per_node (k) consecutive ranks. Intra-node ring
// reduce-scatter (k chunks), ring all-reduce across the m = p / k nodes among ranks with the same
// local index on the chunk they own, intra-node ring all-gather. 2(k-1) + 2(m-1) rounds.
#include "collectives/algorithms/schedule_builders.hpp"

namespace perigee::collectives::algorithms::detail {

Status build_hierarchical(const ScheduleParams& p, Schedule* out) {
  const int k = p.ranks_per_node;
  PERIGEE_REQUIRE(k >= 1 && p.ranks % k == 0, StatusCode::kInvalidArgument,
                  "hierarchical schedule: ranks_per_node = ", k,
                  " must be >= 1 and divide ranks = ", p.ranks);
  const int m = p.ranks / k;
  const Slice all{0, p.count};
  const size_t intra_rounds = static_cast<size_t>(k - 1);
  const size_t inter_rounds = static_cast<size_t>(2 * (m - 1));

  RoundSink intra_rs(&out->rounds, 0);
  RoundSink inter_rs(&out->rounds, intra_rounds);
  RoundSink inter_ag(&out->rounds, intra_rounds + inter_rounds / 2);
  RoundSink intra_ag(&out->rounds, intra_rounds + inter_rounds);
  for (int node = 0; node < m; ++node) {
    std::vector<int> members;
    for (int l = 0; l < k; ++l) members.push_back(node * k + l);
    add_ring_reduce_scatter(members, all, intra_rs);
    add_ring_all_gather(members, all, intra_ag);
  }
  for (int l = 0; l < k; ++l) {
    std::vector<int> peers;
    for (int node = 0; node < m; ++node) peers.push_back(node * k + l);
    const Slice owned = split_slice(all, k, ring_owned_chunk(l, k));
    add_ring_reduce_scatter(peers, owned, inter_rs);
    add_ring_all_gather(peers, owned, inter_ag);
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
