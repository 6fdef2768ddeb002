// Construction of the two complementary binary trees and the pipelining parameters.
#include "collectives/algorithms/double_binary_tree.hpp"

#include <algorithm>

namespace perigee::collectives::algorithms {
namespace {

unsigned lowest_bit(unsigned v) {
  return v & (~v + 1u);
}

// Builds the subtree over label positions [lo, hi) (label = position + 1); returns its root rank.
int build_range(const std::vector<int>& rank_of_label, int lo, int hi, int depth, BinaryTree* t) {
  if (lo >= hi) return -1;
  int best = lo;
  for (int i = lo + 1; i < hi; ++i) {
    if (lowest_bit(static_cast<unsigned>(i + 1)) > lowest_bit(static_cast<unsigned>(best + 1))) {
      best = i;
    }
  }
  const int v = rank_of_label[static_cast<size_t>(best)];
  t->depth[static_cast<size_t>(v)] = depth;
  int h = 0;
  for (int child : {build_range(rank_of_label, lo, best, depth + 1, t),
                    build_range(rank_of_label, best + 1, hi, depth + 1, t)}) {
    if (child < 0) continue;
    t->parent[static_cast<size_t>(child)] = v;
    t->children[static_cast<size_t>(v)].push_back(child);
    h = std::max(h, t->height[static_cast<size_t>(child)] + 1);
  }
  t->height[static_cast<size_t>(v)] = h;
  return v;
}

BinaryTree build_tree(int ranks, const std::vector<int>& label_of_rank) {
  const size_t n = static_cast<size_t>(ranks);
  BinaryTree t;
  t.parent.assign(n, -1);
  t.children.assign(n, {});
  t.depth.assign(n, 0);
  t.height.assign(n, 0);
  std::vector<int> rank_of_label(n);
  for (int r = 0; r < ranks; ++r) rank_of_label[static_cast<size_t>(label_of_rank[r] - 1)] = r;
  t.root = build_range(rank_of_label, 0, ranks, 0, &t);
  return t;
}

}  // namespace

std::array<BinaryTree, 2> double_binary_trees(int ranks) {
  std::vector<int> first(static_cast<size_t>(ranks));
  std::vector<int> second(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    first[static_cast<size_t>(r)] = r + 1;
    if (ranks % 2 == 0) {
      second[static_cast<size_t>(r)] = ranks - r;
    } else {
      second[static_cast<size_t>(r)] = r == 0 ? ranks : r;
    }
  }
  return {build_tree(ranks, first), build_tree(ranks, second)};
}

TreeSlice double_binary_tree_slice(size_t count, int tree) {
  const size_t half = count / 2;
  return tree == 0 ? TreeSlice{0, half} : TreeSlice{half, count - half};
}

int double_binary_tree_chunks(const ScheduleParams& params) {
  const size_t larger = double_binary_tree_slice(params.count, 1).count;
  // More chunks than elements would be empty rounds (the schedule drops them, the model would not).
  if (params.pipeline_chunks > 0)
    return static_cast<int>(
        std::min<size_t>(static_cast<size_t>(params.pipeline_chunks), std::max<size_t>(larger, 1)));
  const size_t chunks = (larger + 16383) / 16384;
  return static_cast<int>(std::clamp<size_t>(chunks, 1, 64));
}

int double_binary_tree_rounds(int chunks, const std::array<BinaryTree, 2>& trees) {
  const int h = std::max(trees[0].tree_height(), trees[1].tree_height());
  return h == 0 ? 0 : chunks + 2 * h - 1;
}

}  // namespace perigee::collectives::algorithms
