// 2D-torus all-reduce on a grid_x * grid_y grid, rank r = y * grid_x + x: ring reduce-scatter along
// each row (X), ring all-reduce of each rank's owned chunk along its column (Y), ring all-gather
// along X. 2(X-1) + 2(Y-1) rounds; bytes per rank as a flat ring.
#include "collectives/algorithms/schedule_builders.hpp"

namespace perigee::collectives::algorithms::detail {

Status build_torus2d(const ScheduleParams& p, Schedule* out) {
  const int gx = p.grid_x;
  const int gy = p.grid_y;
  PERIGEE_REQUIRE(gx >= 1 && gy >= 1 && static_cast<long long>(gx) * gy == p.ranks,
                  StatusCode::kInvalidArgument, "torus2d schedule: grid_x * grid_y = ", gx, " * ", gy,
                  " must equal ranks = ", p.ranks, " (set grid_x and grid_y)");
  const Slice all{0, p.count};
  const size_t x_rounds = static_cast<size_t>(gx - 1);
  const size_t y_rounds = static_cast<size_t>(2 * (gy - 1));

  RoundSink row_rs(&out->rounds, 0);
  RoundSink col_rs(&out->rounds, x_rounds);
  RoundSink col_ag(&out->rounds, x_rounds + y_rounds / 2);
  RoundSink row_ag(&out->rounds, x_rounds + y_rounds);
  for (int y = 0; y < gy; ++y) {
    std::vector<int> row;
    for (int x = 0; x < gx; ++x) row.push_back(y * gx + x);
    add_ring_reduce_scatter(row, all, row_rs);
    add_ring_all_gather(row, all, row_ag);
  }
  // Every rank of column x owns the same chunk of its row: all-reduce it along the column.
  for (int x = 0; x < gx; ++x) {
    std::vector<int> column;
    for (int y = 0; y < gy; ++y) column.push_back(y * gx + x);
    const Slice owned = split_slice(all, gx, ring_owned_chunk(x, gx));
    add_ring_reduce_scatter(column, owned, col_rs);
    add_ring_all_gather(column, owned, col_ag);
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
