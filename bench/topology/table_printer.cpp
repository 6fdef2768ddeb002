// nccl-tests-style table of perigee-bench (see table_printer.hpp).
#include "bench/topology/table_printer.hpp"

#include <cstring>

namespace perigee::bench::topology {

std::string format_fixed(double v, int width) {
  char buf[64];
  for (int decimals = 2; decimals >= 0; --decimals) {
    std::snprintf(buf, sizeof buf, "%*.*f", width, decimals, v);
    if (static_cast<int>(std::strlen(buf)) <= width) return buf;
  }
  std::snprintf(buf, sizeof buf, "%*.3g", width, v);
  return buf;
}

namespace {

std::string wrong_text(long long w) {
  return std::to_string(w);
}

// Bandwidths over satellite links are often far below 0.01 GB/s: keep 3 significant digits there.
std::string format_bw(double v, int width) {
  if (v == 0.0 || v >= 0.01) return format_fixed(v, width);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%*.3g", width, v);
  return buf;
}

}  // namespace

void TablePrinter::run_header(const RunInfo& info) {
  std::fprintf(out_, "# perigee-bench: all_reduce over emulated laser links (times are emulated us)\n");
  if (info.step_bytes > 0) {
    std::fprintf(
        out_,
        "# nRanks %d minBytes %zu maxBytes %zu step: %zu(bytes) warmup iters: %d iters: %d validation: 1\n",
        info.ranks, info.min_bytes, info.max_bytes, info.step_bytes, info.warmup, info.iters);
  } else {
    std::fprintf(
        out_,
        "# nRanks %d minBytes %zu maxBytes %zu step: %g(factor) warmup iters: %d iters: %d validation: 1\n",
        info.ranks, info.min_bytes, info.max_bytes, info.factor, info.warmup, info.iters);
  }
  if (!info.suite.empty()) std::fprintf(out_, "# suite: %s\n", info.suite.c_str());
  std::fprintf(out_, "# time scale: %s (wall seconds per emulated second; time = wall / scale)\n",
               info.time_scale.c_str());
  std::fflush(out_);
}

void TablePrinter::topology_header(const TopologyResult& t) {
  const RankMapInfo& m = t.rank_map;
  std::fprintf(out_, "#\n# ==== topology %s: %s, %d satellites, %d links\n", t.label.c_str(), t.name.c_str(),
               t.nodes, t.links);
  std::fprintf(out_, "# rank map: %s, %d rank(s) per satellite", m.mapping.c_str(), m.ranks_per_satellite);
  if (m.grid_x > 0) std::fprintf(out_, ", grid %d x %d", m.grid_x, m.grid_y);
  if (m.ranks_per_satellite > 1) {
    std::fprintf(out_, ", intra-satellite %.0f Gb/s %.3g us", m.intra_bandwidth_gbps,
                 m.intra_latency_s * 1e6);
  }
  std::fprintf(out_, "\n");
  for (size_t r = 0; r < m.satellite_of_rank.size(); ++r) {
    std::fprintf(out_, "#  Rank %2zu on satellite %4d\n", r, m.satellite_of_rank[r]);
  }
  std::fflush(out_);
}

void TablePrinter::algorithm_header(const AlgorithmResult& a) {
  std::fprintf(out_, "#\n# -- algorithm %s\n", a.algorithm.c_str());
  std::fprintf(out_, "# time scale %.6g (%s)\n", a.time_scale, a.time_scale_reason.c_str());
  std::fprintf(out_, "# predicted: %s%s%s\n", a.formula.c_str(), a.predicted_note.empty() ? "" : "  ",
               a.predicted_note.c_str());
  std::fprintf(out_, "#%71s%33s\n", "out-of-place", "in-place");
  std::fprintf(out_, "#%11s %12s %8s %6s %6s %10s %8s %8s %6s %10s %8s %8s %6s %12s %9s\n", "size", "count",
               "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw",
               "#wrong", "predicted", "meas/pred");
  std::fprintf(out_, "#%11s %12s %8s %6s %6s %10s %8s %8s %6s %10s %8s %8s %6s %12s %9s\n", "(B)",
               "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "",
               "(us)", "");
  std::fflush(out_);
}

void TablePrinter::row(const RowResult& r) {
  const PlacementResult& o = r.out_of_place;
  const PlacementResult& i = r.in_place;
  std::fprintf(out_, "%12zu %12zu %8s %6s %6d %s %s %s %6s %s %s %s %6s %s %s\n", r.bytes, r.count,
               r.type.c_str(), "sum", -1, format_fixed(o.time_us, 10).c_str(), format_bw(o.alg_bw, 8).c_str(),
               format_bw(o.bus_bw, 8).c_str(), wrong_text(o.wrong).c_str(),
               format_fixed(i.time_us, 10).c_str(), format_bw(i.alg_bw, 8).c_str(),
               format_bw(i.bus_bw, 8).c_str(), wrong_text(i.wrong).c_str(),
               format_fixed(r.predicted_us, 12).c_str(), format_fixed(r.meas_over_pred(), 9).c_str());
  std::fflush(out_);
}

void TablePrinter::algorithm_footer(const AlgorithmResult& a) {
  const long long wrong = a.wrong_total();
  std::fprintf(out_, "# Out of bounds values : %lld %s\n", wrong, wrong == 0 ? "OK" : "FAILED");
  std::fprintf(out_, "# Avg bus bandwidth    : %g\n", a.avg_bus_bw());
  if (!a.rows.empty()) {
    const RowResult& r = a.rows.back();
    std::fprintf(
        out_, "# Largest size: emulated %.6g us, timing model %.6g us, alpha-beta %.6g us, meas/pred %.3f\n",
        r.out_of_place.time_us, r.out_of_place.model_us, r.predicted_us, r.meas_over_pred());
  }
  std::fflush(out_);
}

void TablePrinter::skipped(const AlgorithmResult& a) {
  std::fprintf(out_, "#\n# -- algorithm %s: skipped (%s)\n", a.algorithm.c_str(), a.reason.c_str());
  std::fflush(out_);
}

void TablePrinter::summary(const std::vector<TopologyResult>& topologies) {
  std::fprintf(out_, "#\n# ==== summary: largest size, emulated out-of-place time (meas/pred, meas/model)\n");
  for (const auto& t : topologies) {
    std::fprintf(out_, "# %-16s", t.label.c_str());
    for (const auto& a : t.algorithms) {
      if (a.skipped || a.rows.empty()) continue;
      const RowResult& r = a.rows.back();
      const double model =
          r.out_of_place.model_us > 0 ? r.out_of_place.time_us / r.out_of_place.model_us : 0.0;
      std::fprintf(out_, "  %s %.4g ms (%.2f, %.2f)", a.algorithm.c_str(), r.out_of_place.time_us / 1e3,
                   r.meas_over_pred(), model);
    }
    std::fprintf(out_, "\n");
  }
  std::string line = "# Winners:";
  for (const auto& t : topologies) {
    const std::string w = t.winner();
    line += " " + t.label + "=" + (w.empty() ? "none" : w) + ";";
  }
  if (line.back() == ';') line.pop_back();
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void TablePrinter::note(const std::string& line) {
  std::fprintf(out_, "# %s\n", line.c_str());
  std::fflush(out_);
}

}  // namespace perigee::bench::topology
