// Phase lists of the all-reduce algorithms for the topology-aware cost model (cost_phases.hpp).
#include "collectives/algorithms/cost_phases.hpp"

#include <algorithm>

#include "collectives/algorithms/double_binary_tree.hpp"

namespace perigee::collectives::algorithms::detail {
namespace {

using Pairs = std::vector<std::pair<int, int>>;

// Ring neighbours of every group: member i sends to member i + 1 (groups of one send nothing).
Pairs ring_pairs(const std::vector<std::vector<int>>& groups) {
  Pairs pairs;
  for (const auto& g : groups) {
    if (g.size() < 2) continue;
    for (size_t i = 0; i < g.size(); ++i) pairs.emplace_back(g[i], g[(i + 1) % g.size()]);
  }
  return pairs;
}

void add_phase(std::vector<Phase>* out, std::string label, double steps, double bytes, Pairs pairs,
               bool pipelined = false) {
  if (steps <= 0.0 || pairs.empty()) return;
  out->push_back(Phase{std::move(label), steps, bytes, std::move(pairs), pipelined});
}

void ring_phases(const ScheduleParams& p, double n, std::vector<Phase>* out) {
  std::vector<int> all(static_cast<size_t>(p.ranks));
  for (int r = 0; r < p.ranks; ++r) all[static_cast<size_t>(r)] = r;
  add_phase(out, "ring", 2.0 * (p.ranks - 1), n / p.ranks, ring_pairs({all}));
}

void rabenseifner_phases(const ScheduleParams& p, double n, std::vector<Phase>* out) {
  int core = 1;
  while (core * 2 <= p.ranks) core *= 2;
  const int r = p.ranks - core;
  auto real_rank = [r](int c) { return c < r ? 2 * c : c + r; };
  Pairs fold;
  Pairs unfold;
  for (int i = 0; i < r; ++i) {
    fold.emplace_back(2 * i + 1, 2 * i);
    unfold.emplace_back(2 * i, 2 * i + 1);
  }
  add_phase(out, "fold", 1.0, n, fold);
  double bytes = n;
  for (int d = 1; d < core; d *= 2) {
    bytes /= 2.0;
    Pairs pairs;
    for (int c = 0; c < core; ++c) pairs.emplace_back(real_rank(c), real_rank(c ^ d));
    add_phase(out, "d=" + std::to_string(d), 2.0, bytes, pairs);
  }
  add_phase(out, "unfold", 1.0, n, unfold);
}

void torus2d_phases(const ScheduleParams& p, double n, std::vector<Phase>* out) {
  const int gx = p.grid_x;
  const int gy = p.grid_y;
  std::vector<std::vector<int>> rows(static_cast<size_t>(gy));
  std::vector<std::vector<int>> columns(static_cast<size_t>(gx));
  for (int y = 0; y < gy; ++y) {
    for (int x = 0; x < gx; ++x) {
      rows[static_cast<size_t>(y)].push_back(y * gx + x);
      columns[static_cast<size_t>(x)].push_back(y * gx + x);
    }
  }
  add_phase(out, "X", 2.0 * (gx - 1), n / gx, ring_pairs(rows));
  add_phase(out, "Y", 2.0 * (gy - 1), n / (static_cast<double>(gx) * gy), ring_pairs(columns));
}

void hierarchical_phases(const ScheduleParams& p, double n, std::vector<Phase>* out) {
  const int k = p.ranks_per_node;
  const int m = p.ranks / k;
  std::vector<std::vector<int>> nodes(static_cast<size_t>(m));
  std::vector<std::vector<int>> peers(static_cast<size_t>(k));
  for (int node = 0; node < m; ++node) {
    for (int l = 0; l < k; ++l) {
      nodes[static_cast<size_t>(node)].push_back(node * k + l);
      peers[static_cast<size_t>(l)].push_back(node * k + l);
    }
  }
  add_phase(out, "intra", 2.0 * (k - 1), n / k, ring_pairs(nodes));
  add_phase(out, "inter", 2.0 * (m - 1), n / (static_cast<double>(k) * m), ring_pairs(peers));
}

// One phase per run of rounds with the same active tree edges (double_binary_tree.hpp timing),
// pipelined: a rank waits only for its tree neighbours, so a slower edge delays the ranks after it
// once instead of slowing every round (the rounds overlap in time).
void double_binary_tree_phases(const ScheduleParams& p, size_t element_bytes, std::vector<Phase>* out) {
  const auto trees = double_binary_trees(p.ranks);
  const int chunks = double_binary_tree_chunks(p);
  const int rounds = double_binary_tree_rounds(chunks, trees);
  const size_t larger = double_binary_tree_slice(p.count, 1).count;
  const double bytes = static_cast<double>((larger + static_cast<size_t>(chunks) - 1) /
                                           static_cast<size_t>(chunks) * element_bytes);
  Pairs previous;
  int first = 0;
  auto flush = [&](int end) {
    add_phase(out, "rounds " + std::to_string(first) + "-" + std::to_string(end - 1), end - first, bytes,
              previous, true);
  };
  for (int k = 0; k < rounds; ++k) {
    Pairs active;
    for (const BinaryTree& t : trees) {
      const int h = t.tree_height();
      for (int v = 0; v < p.ranks; ++v) {
        const size_t vi = static_cast<size_t>(v);
        const int up = k - t.height[vi];
        if (t.parent[vi] >= 0 && up >= 0 && up < chunks) active.emplace_back(v, t.parent[vi]);
        const int down = k - h - t.depth[vi];
        if (down >= 0 && down < chunks) {
          for (int child : t.children[vi]) active.emplace_back(v, child);
        }
      }
    }
    std::sort(active.begin(), active.end());
    if (k > 0 && active != previous) {
      flush(k);
      first = k;
    }
    previous = std::move(active);
  }
  if (rounds > 0) flush(rounds);
}

}  // namespace

const char* symbolic_formula(Algorithm a) {
  switch (a) {
    case Algorithm::kRing:
      return "2(p-1)(a + n/p b)";
    case Algorithm::kRabenseifner:
      return "sum over d=1,2,..,p'/2 of 2(a_d + n/(2d) b_d), + 2(a + n b) when p != p'";
    case Algorithm::kTorus2d:
      return "2(X-1)(a_X + n/X b_X) + 2(Y-1)(a_Y + n/(XY) b_Y)";
    case Algorithm::kHierarchical:
      return "2(k-1)(a_i + n/k b_i) + 2(m-1)(a_o + n/(km) b_o)";
    case Algorithm::kDoubleBinaryTree:
      return "(C + 2H - 1) pipelined rounds of (a_edge + n/(2C) b_edge), critical path";
    case Algorithm::kNative:
    case Algorithm::kAuto:
      break;
  }
  return "";
}

bool torus2d_fits(const ScheduleParams& p) {
  return p.grid_x >= 1 && p.grid_y >= 1 && static_cast<long long>(p.grid_x) * p.grid_y == p.ranks;
}

bool hierarchical_fits(const ScheduleParams& p) {
  return p.ranks_per_node > 1 && p.ranks % p.ranks_per_node == 0;
}

Status allreduce_phases(Algorithm a, const ScheduleParams& p, size_t element_bytes, std::vector<Phase>* out) {
  PERIGEE_REQUIRE(p.ranks >= 1, StatusCode::kInvalidArgument, "cost model (", algorithm_name(a),
                  "): ranks = ", p.ranks, " must be >= 1");
  out->clear();
  const double n = static_cast<double>(p.count) * static_cast<double>(element_bytes);
  switch (a) {
    case Algorithm::kRing:
      ring_phases(p, n, out);
      break;
    case Algorithm::kRabenseifner:
      rabenseifner_phases(p, n, out);
      break;
    case Algorithm::kTorus2d:
      PERIGEE_REQUIRE(torus2d_fits(p), StatusCode::kInvalidArgument,
                      "cost model (torus2d): grid_x * grid_y = ", p.grid_x, " * ", p.grid_y,
                      " must equal ranks = ", p.ranks);
      torus2d_phases(p, n, out);
      break;
    case Algorithm::kHierarchical:
      PERIGEE_REQUIRE(p.ranks_per_node >= 1 && p.ranks % p.ranks_per_node == 0, StatusCode::kInvalidArgument,
                      "cost model (hierarchical): ranks_per_node = ", p.ranks_per_node,
                      " must be >= 1 and divide ranks = ", p.ranks);
      hierarchical_phases(p, n, out);
      break;
    case Algorithm::kDoubleBinaryTree:
      double_binary_tree_phases(p, element_bytes, out);
      break;
    case Algorithm::kNative:
    case Algorithm::kAuto:
      return make_error(StatusCode::kInvalidArgument, "cost model: algorithm '", algorithm_name(a),
                        "' has no phases");
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
