// Links setup: turns the [links] and [comm] sections into the emulated-link communicator (the
// constellation's topology, where the ranks sit, routes, algorithm, time scale). Collective over
// `world`: every rank calls it with the same config.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "collectives/emulated_link_communicator.hpp"
#include "collectives/links/rank_map.hpp"
#include "collectives/links/topology.hpp"
#include "core/status.hpp"
#include "runtime/config.hpp"

namespace perigee::runtime {

// Parses "a-b@start:end;..." (satellites a and b, emulated seconds [start, end)). Errors name the
// entry and what is wrong with it.
Status parse_outages(const std::string& text, std::vector<collectives::links::Outage>* out);

// The topology spec and rank-map spec that [links] describes.
Status links_specs(const LinksConfig& links, collectives::links::TopologySpec* topo,
                   collectives::links::RankMapSpec* map);

// Builds the emulated-link communicator over `world`; *description is one line for the log
// (topology, mapping, algorithm, time scale).
Status make_links_communicator(const CommConfig& comm, const LinksConfig& links, MPI_Comm world,
                               std::unique_ptr<collectives::EmulatedLinkCommunicator>* out,
                               std::string* description);

}  // namespace perigee::runtime
