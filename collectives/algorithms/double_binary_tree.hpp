// The two complementary binary trees of the double-binary-tree all-reduce, and its pipelining
// parameters. Shared by the schedule builder and the cost model.
//
// Tree 0 is the Cartesian tree of the labels 1..p (label = rank + 1) keyed by their lowest set bit:
// the root is the label with the largest lowest bit, each subtree spans a contiguous label range.
// Odd labels are always leaves, even labels interior, so odd ranks are interior in tree 0. Tree 1 is
// the same construction on relabelled ranks: mirrored (label = p - rank) when p is even, shifted
// (rank 0 takes label p, rank r >= 1 keeps label r) when p is odd; either way the ranks interior in
// tree 0 are leaves of tree 1 (rank 0 may be a leaf in both). Heights are about lg p.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "collectives/algorithms/schedule.hpp"

namespace perigee::collectives::algorithms {

struct BinaryTree {
  int root = 0;
  std::vector<int> parent;                 // -1 for the root
  std::vector<std::vector<int>> children;  // at most two
  std::vector<int> depth;                  // root 0
  std::vector<int> height;                 // of the subtree rooted at the rank; leaves 0
  int tree_height() const { return height.empty() ? 0 : height[static_cast<size_t>(root)]; }
};

std::array<BinaryTree, 2> double_binary_trees(int ranks);

// Tree t carries elements [0, count/2) (t = 0) or [count/2, count) (t = 1).
struct TreeSlice {
  size_t offset = 0;
  size_t count = 0;
};
TreeSlice double_binary_tree_slice(size_t count, int tree);

// Chunks each tree's slice is pipelined in: params.pipeline_chunks when > 0 (at most the larger
// slice's element count), otherwise one chunk per 16384 elements of a tree's slice, between 1 and 64.
int double_binary_tree_chunks(const ScheduleParams& params);

// Pipelining (round k, chunk c of a tree of height H): a non-root rank v adds its partial of chunk
// c into its parent in round c + height(v) (all its children sent theirs in earlier rounds); the
// root holds the sum after round c + H - 1; a rank u at depth d forwards the final chunk c to its
// children in round c + H + d. Rounds in all: chunks + 2 * max tree height - 1.
int double_binary_tree_rounds(int chunks, const std::array<BinaryTree, 2>& trees);

}  // namespace perigee::collectives::algorithms
