// Link topologies of satellites joined by laser inter-satellite links (ISLs): nodes are satellites,
// links are bidirectional ISLs whose length, latency (distance / c) and availability change over
// the orbit. A Topology answers "what is the state of link i at time t" (t in seconds since the
// constellation epoch); routing.hpp turns that into routes between ranks.
//
// Kinds (TopologySpec::kind):
//   "walker_delta"  planes x sats_per_plane, RAAN over 360 deg, phasing F, +Grid ISLs
//   "walker_star"   RAAN over 180 deg, +Grid with an open seam (no links between the last and the
//                   first plane), cross-plane links off above cross_plane_max_lat_deg
//   "starlink_shell1"  preset: walker_delta 72 x 22, 53 deg, 550 km, F = 0, 100 Gb/s
//   "starlink_plane"   preset: one 22-satellite plane of shell 1 (a ring)
//   "grid"          an abstract P x N +Grid torus with fixed latency and bandwidth (no geometry)
//   "cluster"       preset: tight formation (Suncatcher-like), 81 satellites within 1 km,
//                   100-200 m apart, 1.6 Tb/s links between near neighbours
//   "file"          any graph from a text file (see docs/topologies.md for the format)
// Every link also has a set-up delay: after it (re)gains line of sight it is usable only after
// setup_delay_s. Outage windows take a link down for [start, end).
#pragma once

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::collectives::links {

struct Outage {
  int a = 0, b = 0;      // satellites at the ends of the link (either order)
  double start_s = 0.0;  // down for [start_s, end_s)
  double end_s = 0.0;
};

struct TopologySpec {
  std::string kind = "starlink_plane";
  int planes = 1;
  int sats_per_plane = 22;
  double inclination_deg = 53.0;
  double altitude_km = 550.0;
  int phasing = 0;                        // Walker F
  double bandwidth_gbps = 100.0;          // per link, per direction (Gb/s, 1e9 bits)
  double setup_delay_s = 0.0;             // link (re)acquisition time
  double min_grazing_km = 80.0;           // a chord must stay above Earth radius + this
  double cross_plane_max_lat_deg = 90.0;  // cross-plane links off above this latitude (walker_star)
  double fixed_latency_s = 0.0;           // "grid": per-hop latency
  std::string file;                       // "file": path of the graph
  std::vector<Outage> outages;

  bool operator==(const TopologySpec&) const = default;
};

struct LinkState {
  int a = 0, b = 0;  // satellites
  double distance_m = 0.0;
  double latency_s = 0.0;
  double bandwidth_Bps = 0.0;  // bytes per second, per direction
  bool up = true;              // line of sight, not in an outage, past its set-up delay
};

// Shape of a +Grid (planes x sats_per_plane) for the 2D-torus algorithm; 0 x 0 when not a grid.
struct GridShape {
  int planes = 0;
  int per_plane = 0;
  bool seam_open = false;  // walker_star: no wrap-around between the last and first plane
};

class Topology {
 public:
  virtual ~Topology() = default;
  virtual std::string name() const = 0;  // e.g. "starlink_shell1 (72x22, 53 deg, 550 km)"
  virtual int num_nodes() const = 0;
  virtual int num_links() const = 0;  // undirected; link i has directed ids 2i (a->b), 2i+1 (b->a)
  virtual LinkState link(int i, double t_s) const = 0;
  virtual GridShape grid() const = 0;
  virtual double period_s() const = 0;  // orbital period (0 when static)
  // The latest time <= t_s at which an availability rule changes some link (an outage starts, or
  // ends plus the set-up delay); -infinity when none. A route snapshot taken before it is stale.
  virtual double last_rule_change_s(double t_s) const {
    (void)t_s;
    return -std::numeric_limits<double>::infinity();
  }
};

// Builds the topology a spec describes. Errors name the key and the reason (bad planes, file line).
Status make_topology(const TopologySpec& spec, std::unique_ptr<Topology>* out);

}  // namespace perigee::collectives::links
