// Rabenseifner all-reduce: recursive-halving reduce-scatter then recursive-doubling all-gather among
// a power-of-two core of p' = 2^floor(lg p) ranks, partners at distance 1, 2, 4, ... (nearest first:
// the largest halves travel the shortest distance). Other p: the first 2r ranks (r = p - p') pair
// up, odd ranks fold their whole buffer into their even neighbour before the core runs and get
// the result back after. 2 lg p' rounds, plus 2 when p is not a power of two.
#include "collectives/algorithms/schedule_builders.hpp"

namespace perigee::collectives::algorithms::detail {
namespace {

// Halves a slice as the element count allows: the lower half gets the smaller part.
Slice lower_half(Slice s) {
  return Slice{s.offset, s.count / 2};
}
Slice upper_half(Slice s) {
  return Slice{s.offset + s.count / 2, s.count - s.count / 2};
}

}  // namespace

Status build_rabenseifner(const ScheduleParams& p, Schedule* out) {
  int core = 1;
  int levels = 0;
  while (core * 2 <= p.ranks) {
    core *= 2;
    ++levels;
  }
  const int r = p.ranks - core;
  auto real_rank = [r](int c) { return c < r ? 2 * c : c + r; };
  const Slice all{0, p.count};

  RoundSink sink(&out->rounds, 0);
  size_t round = 0;
  if (r > 0) {
    for (int i = 0; i < r; ++i) sink.add(round, 2 * i + 1, 2 * i, all, true);
    ++round;
  }
  // range[c]: the slice core rank c is responsible for after the halvings so far.
  std::vector<Slice> range(static_cast<size_t>(core), all);
  std::vector<std::vector<Slice>> history;  // range before each halving, for the doubling
  for (int k = 0; k < levels; ++k, ++round) {
    const int d = 1 << k;
    history.push_back(range);
    std::vector<Slice> next(range.size());
    for (int c = 0; c < core; ++c) {
      const bool keep_low = (c & d) == 0;
      const Slice mine = keep_low ? lower_half(range[c]) : upper_half(range[c]);
      const Slice theirs = keep_low ? upper_half(range[c]) : lower_half(range[c]);
      sink.add(round, real_rank(c), real_rank(c ^ d), theirs, true);
      next[c] = mine;
    }
    range = std::move(next);
  }
  for (int k = levels - 1; k >= 0; --k, ++round) {
    const int d = 1 << k;
    for (int c = 0; c < core; ++c) sink.add(round, real_rank(c), real_rank(c ^ d), range[c], false);
    range = history[static_cast<size_t>(k)];
  }
  if (r > 0) {
    for (int i = 0; i < r; ++i) sink.add(round, 2 * i, 2 * i + 1, all, false);
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
