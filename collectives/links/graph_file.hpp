// The "file" topology: a link graph written as text, one statement per line.
//
//   # comment (a '#' anywhere starts a comment that runs to the end of the line)
//   node <id> [name]
//   link <a> <b> latency_ms=<x> [bandwidth_gbps=<y>]
//   link <a> <b> distance_km=<x> [bandwidth_gbps=<y>]
//
// Node ids are integers; every id appears once and the ids must be 0..n-1 (in any order); a name
// is one word. A link joins two nodes declared above it; give exactly one of latency_ms (distance
// = latency * c) or distance_km (latency = distance / c); bandwidth_gbps (Gb/s per direction)
// defaults to TopologySpec::bandwidth_gbps. No self-links, no second link between one pair.
// Errors name "<file>:<line>:" and the problem.
#pragma once

#include <memory>
#include <string>

#include "collectives/links/link_model.hpp"

namespace perigee::collectives::links {

// Parses graph text; `source` names it in errors (a path, or "<text>").
Status parse_graph_text(const std::string& text, const std::string& source, double default_bandwidth_gbps,
                        std::unique_ptr<LinkModelTopology>* out);

// Reads spec.file and parses it; applies spec.outages and spec.setup_delay_s.
Status make_file_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out);

}  // namespace perigee::collectives::links
