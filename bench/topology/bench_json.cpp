// JSON output of perigee-bench (see bench_json.hpp).
#include "bench/topology/bench_json.hpp"

namespace perigee::bench::topology {

using nlohmann::ordered_json;

nlohmann::ordered_json spec_to_json(const collectives::links::TopologySpec& s) {
  ordered_json outages = ordered_json::array();
  for (const auto& o : s.outages)
    outages.push_back({{"a", o.a}, {"b", o.b}, {"start_s", o.start_s}, {"end_s", o.end_s}});
  return {{"kind", s.kind},
          {"planes", s.planes},
          {"sats_per_plane", s.sats_per_plane},
          {"inclination_deg", s.inclination_deg},
          {"altitude_km", s.altitude_km},
          {"phasing", s.phasing},
          {"bandwidth_gbps", s.bandwidth_gbps},
          {"setup_delay_s", s.setup_delay_s},
          {"min_grazing_km", s.min_grazing_km},
          {"cross_plane_max_lat_deg", s.cross_plane_max_lat_deg},
          {"fixed_latency_s", s.fixed_latency_s},
          {"file", s.file},
          {"outages", outages}};
}

namespace {

ordered_json placement_json(const PlacementResult& p) {
  return {{"time", p.time_us}, {"alg_bw", p.alg_bw},   {"bus_bw", p.bus_bw},
          {"nwrong", p.wrong}, {"wall_us", p.wall_us}, {"model_us", p.model_us}};
}

ordered_json algorithm_json(const AlgorithmResult& a) {
  ordered_json j = {{"algorithm", a.algorithm}, {"skipped", a.skipped}};
  if (a.skipped) {
    j["reason"] = a.reason;
    return j;
  }
  j["time_scale"] = a.time_scale;
  j["time_scale_reason"] = a.time_scale_reason;
  j["calibration_wall_s"] = a.calibration_wall_s;
  j["formula"] = a.formula;
  if (!a.predicted_note.empty()) j["predicted_note"] = a.predicted_note;
  ordered_json rows = ordered_json::array();
  for (const auto& r : a.rows) {
    rows.push_back({{"size", r.bytes},
                    {"count", r.count},
                    {"type", r.type},
                    {"redop", "sum"},
                    {"root", -1},
                    {"out_of_place", placement_json(r.out_of_place)},
                    {"in_place", placement_json(r.in_place)},
                    {"predicted_us", r.predicted_us},
                    {"meas_over_pred", r.meas_over_pred()},
                    {"model_over_pred", r.predicted_us > 0 ? r.out_of_place.model_us / r.predicted_us : 0.0},
                    {"formula", r.formula}});
  }
  j["rows"] = rows;
  j["out_of_bounds"] = a.wrong_total();
  j["avg_bus_bw"] = a.avg_bus_bw();
  return j;
}

}  // namespace

nlohmann::ordered_json topology_to_json(const TopologyResult& t) {
  const RankMapInfo& m = t.rank_map;
  ordered_json algs = ordered_json::array();
  for (const auto& a : t.algorithms) algs.push_back(algorithm_json(a));
  const std::string winner = t.winner();
  return {{"label", t.label},
          {"name", t.name},
          {"nodes", t.nodes},
          {"links", t.links},
          {"spec", spec_to_json(t.spec)},
          {"rank_map",
           {{"mapping", m.mapping},
            {"ranks_per_satellite", m.ranks_per_satellite},
            {"satellite_of_rank", m.satellite_of_rank},
            {"grid_x", m.grid_x},
            {"grid_y", m.grid_y},
            {"intra_bandwidth_gbps", m.intra_bandwidth_gbps},
            {"intra_latency_s", m.intra_latency_s}}},
          {"algorithms", algs},
          {"winner", winner.empty() ? ordered_json(nullptr) : ordered_json(winner)},
          {"astra_sim_files", t.astra_sim_files}};
}

nlohmann::ordered_json run_to_json(const RunInfo& info, const std::vector<TopologyResult>& topologies) {
  ordered_json tops = ordered_json::array();
  ordered_json winners = ordered_json::object();
  for (const auto& t : topologies) {
    tops.push_back(topology_to_json(t));
    const std::string w = t.winner();
    winners[t.label] = w.empty() ? ordered_json(nullptr) : ordered_json(w);
  }
  return {
      {"benchmark", "perigee-bench"},
      {"collective", "all_reduce"},
      {"time_unit", "emulated us (wall / time_scale)"},
      {"ranks", info.ranks},
      {"min_bytes", info.min_bytes},
      {"max_bytes", info.max_bytes},
      {"step_factor", info.factor},
      {"step_bytes", info.step_bytes},
      {"warmup_iters", info.warmup},
      {"iters", info.iters},
      {"suite", info.suite},
      {"time_scale_option", info.time_scale},  // "auto" or the --time-scale text; the number is per algorithm
      {"topologies", tops},
      {"winners", winners}};
}

}  // namespace perigee::bench::topology
