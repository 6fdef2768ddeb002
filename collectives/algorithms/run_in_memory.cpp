// In-process executor of a schedule with the round semantics of schedule.hpp: every transfer
// snapshots its source slice at the start of the round, then receivers apply the slices in order.
#include <cstdint>

#include "collectives/algorithms/schedule.hpp"

namespace perigee::collectives::algorithms {

template <typename T>
Status run_schedule_in_memory(const Schedule& s, std::vector<std::vector<T>>& buffers) {
  PERIGEE_CHECK(validate_schedule(s));
  PERIGEE_REQUIRE(buffers.size() == static_cast<size_t>(s.ranks), StatusCode::kInvalidArgument,
                  "run_schedule_in_memory(", algorithm_name(s.algorithm), "): ", buffers.size(),
                  " buffers for ", s.ranks, " ranks");
  for (size_t r = 0; r < buffers.size(); ++r) {
    PERIGEE_REQUIRE(buffers[r].size() == s.count, StatusCode::kInvalidArgument, "run_schedule_in_memory(",
                    algorithm_name(s.algorithm), "): rank ", r, " buffer holds ", buffers[r].size(),
                    " elements, schedule expects ", s.count);
  }
  std::vector<T> staged;
  std::vector<size_t> starts;
  for (const Round& round : s.rounds) {
    staged.clear();
    starts.clear();
    for (const Transfer& t : round.transfers) {
      starts.push_back(staged.size());
      const T* src = buffers[static_cast<size_t>(t.src)].data() + t.offset;
      staged.insert(staged.end(), src, src + t.count);
    }
    for (size_t i = 0; i < round.transfers.size(); ++i) {
      const Transfer& t = round.transfers[i];
      T* dst = buffers[static_cast<size_t>(t.dst)].data() + t.offset;
      const T* in = staged.data() + starts[i];
      if (t.reduce) {
        for (size_t e = 0; e < t.count; ++e) dst[e] += in[e];
      } else {
        for (size_t e = 0; e < t.count; ++e) dst[e] = in[e];
      }
    }
  }
  return Status::ok();
}

template Status run_schedule_in_memory<float>(const Schedule&, std::vector<std::vector<float>>&);
template Status run_schedule_in_memory<double>(const Schedule&, std::vector<std::vector<double>>&);
template Status run_schedule_in_memory<int32_t>(const Schedule&, std::vector<std::vector<int32_t>>&);
template Status run_schedule_in_memory<int64_t>(const Schedule&, std::vector<std::vector<int64_t>>&);

}  // namespace perigee::collectives::algorithms
