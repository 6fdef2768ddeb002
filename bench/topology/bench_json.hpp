// JSON document of a perigee-bench run: options, then per topology its spec, rank map, and per
// algorithm every row with all fields (nccl-tests' keys time/alg_bw/bus_bw/nwrong per placement,
// plus emulated and wall microseconds, the model's timeline duration and the alpha-beta
// prediction with its formula), and the winner per topology.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "bench/topology/bench_result.hpp"
#include "bench/topology/table_printer.hpp"

namespace perigee::bench::topology {

nlohmann::ordered_json spec_to_json(const collectives::links::TopologySpec& spec);
nlohmann::ordered_json topology_to_json(const TopologyResult& t);
nlohmann::ordered_json run_to_json(const RunInfo& info, const std::vector<TopologyResult>& topologies);

}  // namespace perigee::bench::topology
