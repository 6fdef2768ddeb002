// ASTRA-sim export: the network YAML has the four keys with one entry per dimension (Ring x Ring
// for a grid map, a Switch first for several ranks per satellite, one Ring otherwise) and the
// system JSON parses back with the all-reduce implementation per dimension.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "collectives/links/astra_sim.hpp"
#include "collectives/links/topology.hpp"

namespace perigee::collectives::links {
namespace {

using algorithms::Algorithm;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

// The value text of "key: ..." in the YAML, or "" when absent.
std::string yaml_line(const std::string& yml, const std::string& key) {
  std::istringstream in(yml);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ": ", 0) == 0) return line.substr(key.size() + 2);
  }
  return "";
}

struct Written {
  std::string yml;
  nlohmann::json sys;
};

Written write(const Topology& t, const RankMap& m, Algorithm a, double time, const std::string& tag) {
  const std::string prefix = ::testing::TempDir() + "perigee_astra_" + tag;
  const Status st = write_astra_sim(t, m, a, time, prefix);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  Written w;
  w.yml = slurp(prefix + ".network.yml");
  const std::string js = slurp(prefix + ".system.json");
  w.sys = nlohmann::json::parse(js, nullptr, /*allow_exceptions=*/false);
  std::remove((prefix + ".network.yml").c_str());
  std::remove((prefix + ".system.json").c_str());
  return w;
}

std::unique_ptr<Topology> build(const std::string& kind) {
  TopologySpec spec;
  spec.kind = kind;
  std::unique_ptr<Topology> t;
  EXPECT_TRUE(make_topology(spec, &t).is_ok());
  return t;
}

TEST(LinksAstraSim, GridMapIsRingByRing) {
  auto t = build("starlink_shell1");
  RankMapSpec spec;
  spec.mapping = "grid";
  spec.grid_x = 22;
  spec.grid_y = 72;  // whole shell: every ring neighbour one hop away, wrap-arounds included
  RankMap m;
  ASSERT_TRUE(make_rank_map(*t, 22 * 72, spec, &m).is_ok());
  const Written w = write(*t, m, Algorithm::kTorus2d, 0.0, "grid");
  EXPECT_EQ(yaml_line(w.yml, "topology"), "[ Ring, Ring ]");
  EXPECT_EQ(yaml_line(w.yml, "npus_count"), "[ 22, 72 ]");
  EXPECT_EQ(yaml_line(w.yml, "bandwidth"), "[ 12.5, 12.5 ]");
  // X: 1972 km intra-plane hops = 6.58 ms; Y: one cross-plane hop at the epoch's latitudes
  // (between 1.21 and 2.02 ms).
  double lx = 0, ly = 0;
  ASSERT_EQ(std::sscanf(yaml_line(w.yml, "latency").c_str(), "[ %lf, %lf ]", &lx, &ly), 2);
  EXPECT_NEAR(lx, 6.58e6, 6.58e6 * 0.005);
  EXPECT_GT(ly, 1.20e6);
  EXPECT_LT(ly, 2.03e6);
  ASSERT_FALSE(w.sys.is_discarded());
  EXPECT_EQ(w.sys["all-reduce-implementation"], nlohmann::json({"ring", "ring"}));
  EXPECT_EQ(w.sys["all-gather-implementation"].size(), 2u);
  for (const char* key :
       {"scheduling-policy", "endpoint-delay", "active-chunks-per-dimension", "preferred-dataset-splits",
        "reduce-scatter-implementation", "all-to-all-implementation", "collective-optimization",
        "local-mem-bw", "boost-mode", "roofline-enabled", "peak-perf"}) {
    EXPECT_TRUE(w.sys.contains(key)) << key;
  }
}

TEST(LinksAstraSim, OtherGraphsAreOneRingWithTheMeanLatency) {
  auto t = build("starlink_plane");
  RankMapSpec spec;
  spec.mapping = "spread";
  RankMap m;
  ASSERT_TRUE(make_rank_map(*t, 11, spec, &m).is_ok());  // every other satellite: 2 hops apart
  const Written w = write(*t, m, Algorithm::kRabenseifner, 0.0, "spread");
  EXPECT_EQ(yaml_line(w.yml, "topology"), "[ Ring ]");
  EXPECT_EQ(yaml_line(w.yml, "npus_count"), "[ 11 ]");
  double lat = 0;
  ASSERT_EQ(std::sscanf(yaml_line(w.yml, "latency").c_str(), "[ %lf ]", &lat), 1);
  EXPECT_NEAR(lat, 2 * 6.578e6, 2 * 6.578e6 * 0.005);
  EXPECT_EQ(w.sys["all-reduce-implementation"], nlohmann::json({"halvingDoubling"}));

  const Written tree = write(*t, m, Algorithm::kDoubleBinaryTree, 0.0, "tree");
  EXPECT_EQ(tree.sys["all-reduce-implementation"], nlohmann::json({"doubleBinaryTree"}));
}

TEST(LinksAstraSim, SeveralRanksPerSatelliteAddASwitchDimension) {
  auto t = build("cluster");
  RankMapSpec spec;
  spec.ranks_per_satellite = 4;
  RankMap m;
  ASSERT_TRUE(make_rank_map(*t, 16, spec, &m).is_ok());
  const Written w = write(*t, m, Algorithm::kHierarchical, 0.0, "hier");
  EXPECT_EQ(yaml_line(w.yml, "topology"), "[ Switch, Ring ]");
  EXPECT_EQ(yaml_line(w.yml, "npus_count"), "[ 4, 4 ]");
  double bw_switch = 0, bw_ring = 0;
  ASSERT_EQ(std::sscanf(yaml_line(w.yml, "bandwidth").c_str(), "[ %lf, %lf ]", &bw_switch, &bw_ring), 2);
  EXPECT_DOUBLE_EQ(bw_switch, 450.0);
  EXPECT_DOUBLE_EQ(bw_ring, 200.0);
  EXPECT_EQ(w.sys["all-reduce-implementation"], nlohmann::json({"ring", "ring"}));
}

TEST(LinksAstraSim, ErrorsNameTheProblem) {
  auto t = build("starlink_plane");
  RankMap m;
  ASSERT_TRUE(make_rank_map(*t, 4, RankMapSpec{}, &m).is_ok());
  Status st = write_astra_sim(*t, m, Algorithm::kRing, 0.0, "/nonexistent-dir/x");
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find("/nonexistent-dir/x.network.yml"), std::string::npos) << st.message();
  // A route that does not exist fails the export.
  TopologySpec spec;
  spec.kind = "starlink_plane";
  spec.outages = {Outage{0, 1, 0.0, 10.0}, Outage{0, 21, 0.0, 10.0}};
  std::unique_ptr<Topology> cut;
  ASSERT_TRUE(make_topology(spec, &cut).is_ok());
  st = write_astra_sim(*cut, m, Algorithm::kRing, 5.0, ::testing::TempDir() + "perigee_astra_cut");
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  std::remove((::testing::TempDir() + "perigee_astra_cut.network.yml").c_str());
}

}  // namespace
}  // namespace perigee::collectives::links
