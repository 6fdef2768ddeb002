// Closed-form all-reduce costs on a uniform network (every pair alpha, beta), p ranks, n bytes:
//   ring          2(p-1) a + 2(p-1)/p n b
//   rabenseifner  2 lg p' a + 2(p'-1)/p' n b,  p' = 2^floor(lg p); when p != p' the fold and
//                 unfold add 2(a + n b)
//   torus2d       2(X-1) a + 2(Y-1) a + [2(X-1)/X + 2(Y-1)/(XY)] n b
//   hierarchical  k = ranks_per_node, m = p/k:
//                 2(k-1) a + 2(k-1)/k n b  +  2(m-1) a + 2(m-1)/(mk) n b
//   double tree   C chunks per tree, H = max tree height: (C + 2H - 1)(a + n/(2C) b)
//                 (each round moves one chunk of half the buffer per tree edge; on a full mesh
//                 every edge has its own link; shared tree edges are left to predict_allreduce)
// Algorithms that do not fit p cost +infinity; native is unknown (+infinity); auto is the minimum.
#include <algorithm>
#include <cmath>
#include <limits>

#include "collectives/algorithms/cost_model.hpp"
#include "collectives/algorithms/cost_phases.hpp"
#include "collectives/algorithms/double_binary_tree.hpp"

namespace perigee::collectives::algorithms {

double predict_uniform_s(Algorithm a, const ScheduleParams& p, size_t bytes, const AlphaBeta& ab) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (p.ranks < 1) return kInf;
  const double n = static_cast<double>(bytes);
  const double al = ab.alpha_s;
  const double b = ab.beta_s_per_byte;
  if (a == Algorithm::kAuto) {
    double best = kInf;
    for (Algorithm c : {Algorithm::kRing, Algorithm::kRabenseifner, Algorithm::kTorus2d,
                        Algorithm::kHierarchical, Algorithm::kDoubleBinaryTree}) {
      if (c == Algorithm::kHierarchical && !detail::hierarchical_fits(p)) continue;
      best = std::min(best, predict_uniform_s(c, p, bytes, ab));
    }
    return best;
  }
  if (a == Algorithm::kNative) return kInf;
  if (p.ranks == 1 || bytes == 0) {
    if (a == Algorithm::kTorus2d && !detail::torus2d_fits(p)) return kInf;
    if (a == Algorithm::kHierarchical && p.ranks % std::max(p.ranks_per_node, 1) != 0) return kInf;
    return 0.0;
  }
  const double P = p.ranks;
  switch (a) {
    case Algorithm::kRing:
      return 2.0 * (P - 1) * al + 2.0 * (P - 1) / P * n * b;
    case Algorithm::kRabenseifner: {
      int core = 1;
      int levels = 0;
      while (core * 2 <= p.ranks) {
        core *= 2;
        ++levels;
      }
      const double c = core;
      double t = 2.0 * levels * al + 2.0 * (c - 1) / c * n * b;
      if (core != p.ranks) t += 2.0 * (al + n * b);
      return t;
    }
    case Algorithm::kTorus2d: {
      if (!detail::torus2d_fits(p)) return kInf;
      const double X = p.grid_x;
      const double Y = p.grid_y;
      return 2.0 * (X - 1) * al + 2.0 * (Y - 1) * al + (2.0 * (X - 1) / X + 2.0 * (Y - 1) / (X * Y)) * n * b;
    }
    case Algorithm::kHierarchical: {
      if (p.ranks_per_node < 1 || p.ranks % p.ranks_per_node != 0) return kInf;
      const double k = p.ranks_per_node;
      const double m = P / k;
      return 2.0 * (k - 1) * al + 2.0 * (k - 1) / k * n * b + 2.0 * (m - 1) * al +
             2.0 * (m - 1) / (m * k) * n * b;
    }
    case Algorithm::kDoubleBinaryTree: {
      const int chunks = double_binary_tree_chunks(p);
      const double rounds = double_binary_tree_rounds(chunks, double_binary_trees(p.ranks));
      return rounds * (al + n / (2.0 * chunks) * b);
    }
    case Algorithm::kNative:
    case Algorithm::kAuto:
      break;
  }
  return kInf;
}

}  // namespace perigee::collectives::algorithms
