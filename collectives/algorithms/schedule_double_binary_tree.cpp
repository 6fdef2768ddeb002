// Double-binary-tree all-reduce (double_binary_tree.hpp): each tree reduces half of the buffer to
// its root and broadcasts it back, pipelined in chunks. Sums are exact: a rank adds its partial of
// a chunk into its parent once, in the round after its last child's contribution arrived, and
// broadcasts overwrite with the root's final value.
#include "collectives/algorithms/double_binary_tree.hpp"
#include "collectives/algorithms/schedule_builders.hpp"

namespace perigee::collectives::algorithms::detail {

Status build_double_binary_tree(const ScheduleParams& p, Schedule* out) {
  PERIGEE_REQUIRE(p.pipeline_chunks >= 0, StatusCode::kInvalidArgument,
                  "double_binary_tree schedule: pipeline_chunks = ", p.pipeline_chunks,
                  " must be >= 0 (0 = chosen from count)");
  const auto trees = double_binary_trees(p.ranks);
  const int chunks = double_binary_tree_chunks(p);
  RoundSink sink(&out->rounds, 0);
  for (int t = 0; t < 2; ++t) {
    const BinaryTree& tree = trees[static_cast<size_t>(t)];
    const TreeSlice ts = double_binary_tree_slice(p.count, t);
    const Slice slice{ts.offset, ts.count};
    const int h = tree.tree_height();
    for (int c = 0; c < chunks; ++c) {
      const Slice part = split_slice(slice, chunks, c);
      for (int v = 0; v < p.ranks; ++v) {
        const size_t vi = static_cast<size_t>(v);
        if (tree.parent[vi] >= 0) {
          sink.add(static_cast<size_t>(c + tree.height[vi]), v, tree.parent[vi], part, true);
        }
        for (int child : tree.children[vi]) {
          sink.add(static_cast<size_t>(c + h + tree.depth[vi]), v, child, part, false);
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
