// Structural check of a schedule: ranks in range, no self-sends, slices inside the buffer, and no
// element received twice by one rank in one round unless every such transfer reduces.
#include <algorithm>

#include "collectives/algorithms/schedule.hpp"

namespace perigee::collectives::algorithms {
namespace {

struct Incoming {
  size_t begin = 0;
  size_t end = 0;
  bool reduce = true;
  size_t index = 0;  // transfer index in the round, for messages
};

}  // namespace

Status validate_schedule(const Schedule& s) {
  PERIGEE_REQUIRE(s.ranks >= 1, StatusCode::kInvalidArgument, "validate_schedule(",
                  algorithm_name(s.algorithm), "): ranks = ", s.ranks, " must be >= 1");
  std::vector<std::vector<Incoming>> incoming(static_cast<size_t>(s.ranks));
  for (size_t r = 0; r < s.rounds.size(); ++r) {
    for (auto& list : incoming) list.clear();
    const auto& transfers = s.rounds[r].transfers;
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      PERIGEE_REQUIRE(t.src >= 0 && t.src < s.ranks && t.dst >= 0 && t.dst < s.ranks,
                      StatusCode::kInvalidArgument, "validate_schedule(", algorithm_name(s.algorithm),
                      "): round ", r, " transfer ", i, ": ranks ", t.src, " -> ", t.dst, " outside [0, ",
                      s.ranks, ")");
      PERIGEE_REQUIRE(t.src != t.dst, StatusCode::kInvalidArgument, "validate_schedule(",
                      algorithm_name(s.algorithm), "): round ", r, " transfer ", i, ": rank ", t.src,
                      " sends to itself");
      PERIGEE_REQUIRE(t.offset <= s.count && t.count <= s.count - t.offset, StatusCode::kInvalidArgument,
                      "validate_schedule(", algorithm_name(s.algorithm), "): round ", r, " transfer ", i,
                      ": slice [", t.offset, ", +", t.count, ") outside the buffer of ", s.count,
                      " elements");
      if (t.count > 0) {
        incoming[static_cast<size_t>(t.dst)].push_back(Incoming{t.offset, t.offset + t.count, t.reduce, i});
      }
    }
    for (size_t dst = 0; dst < incoming.size(); ++dst) {
      auto& list = incoming[dst];
      std::sort(list.begin(), list.end(),
                [](const Incoming& a, const Incoming& b) { return a.begin < b.begin; });
      size_t end_any = 0;        // furthest end of the slices seen so far
      size_t end_overwrite = 0;  // furthest end of the overwriting slices seen so far
      for (const Incoming& in : list) {
        const bool clash = in.begin < end_overwrite || (!in.reduce && in.begin < end_any);
        PERIGEE_REQUIRE(!clash, StatusCode::kInvalidArgument, "validate_schedule(",
                        algorithm_name(s.algorithm), "): round ", r, ": rank ", dst, " receives element ",
                        in.begin, " more than once (transfer ", in.index,
                        ") and not every such transfer reduces");
        end_any = std::max(end_any, in.end);
        if (!in.reduce) end_overwrite = std::max(end_overwrite, in.end);
      }
    }
  }
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms
