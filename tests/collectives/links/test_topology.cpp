// Topology kinds: +Grid structure (degree 4 for delta, open seam for star), the latitude cutoff,
// line of sight, set-up delay, outage windows, the presets, the abstract grid, the cluster and
// the text graph format with its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "collectives/links/geometry.hpp"
#include "collectives/links/graph_file.hpp"
#include "collectives/links/link_model.hpp"
#include "collectives/links/static_graph.hpp"
#include "collectives/links/topology.hpp"

namespace perigee::collectives::links {
namespace {

std::unique_ptr<Topology> build(const TopologySpec& spec) {
  std::unique_ptr<Topology> t;
  Status st = make_topology(spec, &t);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return t;
}

std::map<int, int> degrees(const Topology& t) {
  std::map<int, int> deg;
  for (int i = 0; i < t.num_links(); ++i) {
    const LinkState s = t.link(i, 0.0);
    ++deg[s.a];
    ++deg[s.b];
  }
  return deg;
}

int link_between(const Topology& t, int a, int b) {
  return dynamic_cast<const LinkModelTopology&>(t).find_link(a, b);
}

std::string reason(const Topology& t, int i, double time) {
  return dynamic_cast<const LinkModelTopology&>(t).down_reason(i, time);
}

TEST(LinksTopology, StarlinkShell1IsAPlusGridOfDegree4AllUp) {
  TopologySpec spec;
  spec.kind = "starlink_shell1";
  auto t = build(spec);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->num_nodes(), 72 * 22);
  EXPECT_EQ(t->num_links(), 2 * 72 * 22);
  const auto deg = degrees(*t);
  ASSERT_EQ(deg.size(), 72u * 22u);
  for (const auto& [sat, d] : deg) ASSERT_EQ(d, 4) << "satellite " << sat;
  for (int i = 0; i < t->num_links(); ++i) ASSERT_TRUE(t->link(i, 1234.0).up) << i;
  EXPECT_EQ(t->grid().planes, 72);
  EXPECT_EQ(t->grid().per_plane, 22);
  EXPECT_FALSE(t->grid().seam_open);
  EXPECT_NEAR(t->period_s() / 60.0, 95.6, 95.6 * 0.005);
  EXPECT_NE(t->name().find("72x22"), std::string::npos) << t->name();
  // Intra-plane neighbour 1972 km / 6.58 ms; 100 Gb/s = 12.5 GB/s.
  const LinkState s = t->link(link_between(*t, 0, 1), 0.0);
  EXPECT_NEAR(s.distance_m, 1972e3, 1972e3 * 0.005);
  EXPECT_NEAR(s.latency_s, 6.58e-3, 6.58e-3 * 0.005);
  EXPECT_DOUBLE_EQ(s.bandwidth_Bps, 12.5e9);
  // Seam of a delta shell is closed: plane 71 links to plane 0.
  EXPECT_GE(link_between(*t, 71 * 22 + 5, 5), 0);
}

TEST(LinksTopology, CrossPlaneLatencyChangesOverTheOrbit) {
  TopologySpec spec;
  spec.kind = "starlink_shell1";
  auto t = build(spec);
  const int i = link_between(*t, 0, 22);  // plane 0 and plane 1, index 0
  ASSERT_GE(i, 0);
  const double at_equator = t->link(i, 0.0).latency_s;
  const double at_top = t->link(i, t->period_s() / 4).latency_s;
  EXPECT_NEAR(at_equator, 604e3 / kSpeedOfLight, 604e3 / kSpeedOfLight * 0.005);
  EXPECT_NEAR(at_top, 364e3 / kSpeedOfLight, 364e3 / kSpeedOfLight * 0.005);
}

TEST(LinksTopology, StarlinkPlaneIsARingOf22) {
  TopologySpec spec;
  spec.kind = "starlink_plane";
  auto t = build(spec);
  EXPECT_EQ(t->num_nodes(), 22);
  EXPECT_EQ(t->num_links(), 22);
  for (const auto& [sat, d] : degrees(*t)) EXPECT_EQ(d, 2) << sat;
  EXPECT_EQ(t->grid().planes, 1);
  EXPECT_EQ(t->grid().per_plane, 22);
}

// The presets fix the geometry; the link bandwidth is the terminals', so it follows the spec.
TEST(LinksTopology, StarlinkPresetsTakeTheSpecsBandwidthAndKeepTheirShape) {
  TopologySpec spec;
  spec.kind = "starlink_plane";
  spec.bandwidth_gbps = 200.0;
  spec.sats_per_plane = 5;
  spec.altitude_km = 1200.0;
  auto t = build(spec);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->num_nodes(), 22);
  EXPECT_NEAR(t->period_s() / 60.0, 95.6, 95.6 * 0.005);
  for (int i = 0; i < t->num_links(); ++i) EXPECT_DOUBLE_EQ(t->link(i, 0.0).bandwidth_Bps, 25e9) << i;
}

TEST(LinksTopology, WalkerStarLeavesTheSeamOpen) {
  TopologySpec spec;
  spec.kind = "walker_star";
  spec.planes = 6;
  spec.sats_per_plane = 11;
  spec.inclination_deg = 86.4;
  spec.altitude_km = 781;
  auto t = build(spec);
  EXPECT_EQ(t->num_nodes(), 66);
  EXPECT_EQ(t->num_links(), 66 + 5 * 11);
  EXPECT_TRUE(t->grid().seam_open);
  const auto deg = degrees(*t);
  for (int s = 0; s < 66; ++s) {
    const int plane = s / 11;
    EXPECT_EQ(deg.at(s), (plane == 0 || plane == 5) ? 3 : 4) << "satellite " << s;
  }
  EXPECT_LT(link_between(*t, 5 * 11 + 3, 3), 0) << "seam link exists";
  EXPECT_GE(link_between(*t, 4 * 11 + 3, 5 * 11 + 3), 0);
}

TEST(LinksTopology, CrossPlaneLinksGoDownAboveTheLatitudeCutoff) {
  TopologySpec spec;
  spec.kind = "walker_star";
  spec.planes = 6;
  spec.sats_per_plane = 11;
  spec.inclination_deg = 86.4;
  spec.altitude_km = 781;
  spec.cross_plane_max_lat_deg = 68.0;
  auto t = build(spec);
  const int cross = link_between(*t, 0, 11);  // plane 0 -> plane 1, index 0
  const int intra = link_between(*t, 0, 1);
  ASSERT_GE(cross, 0);
  ASSERT_GE(intra, 0);
  const double top = t->period_s() / 4;  // satellite 0 near 86 deg latitude
  EXPECT_TRUE(t->link(cross, 0.0).up);
  EXPECT_FALSE(t->link(cross, top).up);
  EXPECT_NE(reason(*t, cross, top).find("latitude"), std::string::npos) << reason(*t, cross, top);
  EXPECT_TRUE(t->link(intra, top).up) << "intra-plane links ignore the cutoff";
  // Count: around the orbit the link is up a fraction ~ (time below 68 deg) of the period.
  int up = 0;
  const int samples = 360;
  for (int k = 0; k < samples; ++k) up += t->link(cross, t->period_s() * k / samples).up ? 1 : 0;
  EXPECT_GT(up, samples / 2);
  EXPECT_LT(up, samples);
}

TEST(LinksTopology, LineOfSightCutsLinksThatDipUnderTheGrazingHeight) {
  TopologySpec spec;
  spec.kind = "walker_delta";
  spec.planes = 1;
  spec.sats_per_plane = 4;
  auto t = build(spec);
  ASSERT_EQ(t->num_links(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(t->link(i, 0.0).up) << i;
    EXPECT_NE(reason(*t, i, 0.0).find("no line of sight"), std::string::npos) << reason(*t, i, 0.0);
  }
  spec.sats_per_plane = 22;
  auto ok = build(spec);
  for (int i = 0; i < ok->num_links(); ++i) EXPECT_TRUE(ok->link(i, 0.0).up) << i;
}

// Planes 120 deg apart at 80 deg inclination: the cross-plane chord has line of sight only near
// the poles, so the link comes and goes each half orbit.
TopologySpec polar_triplet(double setup_s) {
  TopologySpec spec;
  spec.kind = "walker_delta";
  spec.planes = 3;
  spec.sats_per_plane = 22;
  spec.inclination_deg = 80.0;
  spec.setup_delay_s = setup_s;
  return spec;
}

TEST(LinksTopology, SetupDelayAfterRegainingLineOfSight) {
  auto raw = build(polar_triplet(0.0));
  auto slow = build(polar_triplet(5.0));
  const int i = link_between(*raw, 0, 22);
  ASSERT_GE(i, 0);
  // Find when line of sight returns: bisect between a time without and one with it.
  double lo = 0.0, hi = raw->period_s() / 4;
  ASSERT_FALSE(raw->link(i, lo).up);
  ASSERT_TRUE(raw->link(i, hi).up);
  while (hi - lo > 1e-3) {
    const double mid = (lo + hi) / 2;
    (raw->link(i, mid).up ? hi : lo) = mid;
  }
  const double u = hi;
  EXPECT_TRUE(raw->link(i, u + 0.5).up);
  EXPECT_FALSE(slow->link(i, u + 0.5).up);
  EXPECT_FALSE(slow->link(i, u + 4.0).up);
  EXPECT_NE(reason(*slow, i, u + 4.0).find("setting up"), std::string::npos) << reason(*slow, i, u + 4.0);
  EXPECT_TRUE(slow->link(i, u + 6.5).up);
  EXPECT_NEAR(slow->link(i, u + 6.5).distance_m, raw->link(i, u + 6.5).distance_m, 1e-6);
}

TEST(LinksTopology, OutageWindowsAndSetupAfterThem) {
  TopologySpec spec;
  spec.kind = "starlink_shell1";
  spec.outages = {Outage{1, 0, 100.0, 200.0}};
  auto t = build(spec);
  const int i = link_between(*t, 0, 1);
  EXPECT_TRUE(t->link(i, 99.9).up);
  EXPECT_FALSE(t->link(i, 100.0).up);
  EXPECT_FALSE(t->link(i, 199.9).up);
  EXPECT_NE(reason(*t, i, 150.0).find("outage [100, 200)"), std::string::npos) << reason(*t, i, 150.0);
  EXPECT_TRUE(t->link(i, 200.0).up);
  EXPECT_TRUE(t->link(link_between(*t, 1, 2), 150.0).up) << "other links unaffected";

  spec.setup_delay_s = 3.0;
  auto s = build(spec);
  EXPECT_FALSE(s->link(i, 202.9).up);
  EXPECT_NE(reason(*s, i, 202.0).find("setting up"), std::string::npos) << reason(*s, i, 202.0);
  EXPECT_TRUE(s->link(i, 203.0).up);
}

TEST(LinksTopology, OutageOnAMissingLinkIsAnError) {
  TopologySpec spec;
  spec.kind = "starlink_plane";
  spec.outages = {Outage{0, 5, 0.0, 1.0}};
  std::unique_ptr<Topology> t;
  const Status st = make_topology(spec, &t);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("satellites 0 and 5"), std::string::npos) << st.message();
}

TEST(LinksTopology, BadSpecsNameTheKey) {
  std::unique_ptr<Topology> t;
  TopologySpec spec;
  spec.kind = "walker_delta";
  spec.planes = 0;
  Status st = make_topology(spec, &t);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("links.planes"), std::string::npos) << st.message();
  spec.kind = "hypercube";
  st = make_topology(spec, &t);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("'hypercube'"), std::string::npos) << st.message();
  spec = TopologySpec{};
  spec.setup_delay_s = -1;
  st = make_topology(spec, &t);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("setup_delay_s"), std::string::npos) << st.message();
}

TEST(LinksTopology, AbstractGridTorus) {
  TopologySpec spec;
  spec.kind = "grid";
  spec.planes = 4;
  spec.sats_per_plane = 5;
  spec.fixed_latency_s = 2e-3;
  spec.bandwidth_gbps = 200;
  auto t = build(spec);
  EXPECT_EQ(t->num_nodes(), 20);
  EXPECT_EQ(t->num_links(), 40);
  for (const auto& [sat, d] : degrees(*t)) EXPECT_EQ(d, 4) << sat;
  for (int i = 0; i < t->num_links(); ++i) {
    const LinkState s = t->link(i, 1e6);
    EXPECT_TRUE(s.up);
    EXPECT_DOUBLE_EQ(s.latency_s, 2e-3);
    EXPECT_DOUBLE_EQ(s.bandwidth_Bps, 25e9);
  }
  EXPECT_EQ(t->period_s(), 0.0);
  EXPECT_EQ(t->grid().planes, 4);
  EXPECT_EQ(t->grid().per_plane, 5);
}

TEST(LinksTopology, ClusterFormation) {
  TopologySpec spec;
  spec.kind = "cluster";
  std::unique_ptr<LinkModelTopology> t;
  std::vector<Vec3> pos;
  ASSERT_TRUE(make_cluster_topology(spec, &t, &pos).is_ok());
  EXPECT_EQ(t->num_nodes(), 81);
  EXPECT_EQ(t->num_links(), 144);
  ASSERT_EQ(pos.size(), 81u);
  for (const Vec3& p : pos) EXPECT_LT(norm_m(p), 1000.0);
  double dmin = 1e9, dmax = 0.0;
  for (int i = 0; i < t->num_links(); ++i) {
    const LinkState s = t->link(i, 0.0);
    EXPECT_TRUE(s.up);
    EXPECT_NEAR(s.distance_m, distance_m(pos[s.a], pos[s.b]), 1e-9);
    EXPECT_DOUBLE_EQ(s.bandwidth_Bps, 200e9);  // 1.6 Tb/s
    EXPECT_NEAR(s.latency_s, s.distance_m / kSpeedOfLight, 1e-15);
    dmin = std::min(dmin, s.distance_m);
    dmax = std::max(dmax, s.distance_m);
  }
  EXPECT_GE(dmin, 100.0);
  EXPECT_LE(dmax, 200.0);
  EXPECT_EQ(t->grid().planes, 0);
  // Same layout every time.
  std::unique_ptr<Topology> again = build(spec);
  EXPECT_DOUBLE_EQ(again->link(7, 0.0).distance_m, t->link(7, 0.0).distance_m);
}

TEST(LinksGraphFile, ParsesNodesLinksAndComments) {
  const std::string text =
      "# a triangle plus a tail\n"
      "node 0 alpha\n"
      "node 2   # no name\n"
      "node 1 beta\n"
      "node 3\n"
      "link 0 1 latency_ms=2.5 bandwidth_gbps=400\n"
      "link 1 2 distance_km=1000\n"
      "\n"
      "link 2 0 latency_ms=1   # comment after a link\n"
      "link 2 3 distance_km=0.15 bandwidth_gbps=1600\n";
  std::unique_ptr<LinkModelTopology> t;
  const Status st = parse_graph_text(text, "tri.graph", 100.0, &t);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(t->num_nodes(), 4);
  EXPECT_EQ(t->num_links(), 4);
  EXPECT_EQ(dynamic_cast<const StaticGraphTopology&>(*t).node_name(0), "alpha");
  LinkState s = t->link(0, 0.0);
  EXPECT_DOUBLE_EQ(s.latency_s, 2.5e-3);
  EXPECT_DOUBLE_EQ(s.bandwidth_Bps, 50e9);
  s = t->link(1, 0.0);
  EXPECT_DOUBLE_EQ(s.distance_m, 1e6);
  EXPECT_NEAR(s.latency_s, 1e6 / kSpeedOfLight, 1e-15);
  EXPECT_DOUBLE_EQ(s.bandwidth_Bps, 12.5e9) << "default bandwidth";
  EXPECT_EQ(t->period_s(), 0.0);
}

void expect_parse_error(const std::string& text, const std::string& where, const std::string& what) {
  std::unique_ptr<LinkModelTopology> t;
  const Status st = parse_graph_text(text, "g.txt", 100.0, &t);
  ASSERT_FALSE(st.is_ok()) << text;
  EXPECT_NE(st.message().find(where), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
}

TEST(LinksGraphFile, ErrorsNameFileAndLine) {
  expect_parse_error("node 0\nnode 0\n", "g.txt:2:", "declared twice");
  expect_parse_error("node 0\nnode 1\nlink 0 2 latency_ms=1\n", "g.txt:3:", "not a node declared above");
  expect_parse_error("node 0\nnode 1\n# c\nlink 0 1\n", "g.txt:4:", "expected 'link");
  expect_parse_error("node 0\nnode 1\nlink 0 1 latency_ms=x\n", "g.txt:3:", "not a number");
  expect_parse_error("node 0\nnode 1\nlink 0 1 latency_ms=1 distance_km=3\n", "g.txt:3:", "exactly one");
  expect_parse_error("node 0\nnode 1\nlink 0 1 speed=3\n", "g.txt:3:", "unknown key 'speed'");
  expect_parse_error("node 0\nnode 1\nlink 0 0 latency_ms=1\n", "g.txt:3:", "to itself");
  expect_parse_error("node 0\nnode 1\nlink 0 1 latency_ms=1\nlink 1 0 latency_ms=2\n",
                     "g.txt:4:", "second link");
  expect_parse_error("node 0\nnode 1\nlink 0 1 latency_ms=-1\n", "g.txt:3:", ">= 0");
  expect_parse_error("node 0\nnode 1\nlink 0 1 latency_ms=1 bandwidth_gbps=0\n", "g.txt:3:", "> 0");
  expect_parse_error("nodes 0\n", "g.txt:1:", "unknown statement 'nodes'");
  expect_parse_error("node -1\n", "g.txt:1:", "not an integer");
  expect_parse_error("node 0 a b\n", "g.txt:1:", "fields");
  expect_parse_error("node 0\nnode 2\n", "g.txt", "node 1 is missing");
  expect_parse_error("# empty\n", "g.txt", "no nodes");
}

TEST(LinksGraphFile, ReadsFilesAndAppliesOutages) {
  const std::string path = ::testing::TempDir() + "perigee_links_test.graph";
  {
    std::ofstream f(path);
    f << "node 0\nnode 1\nnode 2\nlink 0 1 latency_ms=1\nlink 1 2 latency_ms=1\n";
  }
  TopologySpec spec;
  spec.kind = "file";
  spec.file = path;
  spec.outages = {Outage{2, 1, 5.0, 6.0}};
  auto t = build(spec);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->num_links(), 2);
  EXPECT_FALSE(t->link(1, 5.5).up);
  EXPECT_TRUE(t->link(0, 5.5).up);
  std::remove(path.c_str());

  std::unique_ptr<Topology> none;
  spec.file = path + ".missing";
  const Status st = make_topology(spec, &none);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find(".missing"), std::string::npos) << st.message();
  spec.file = ::testing::TempDir();  // a folder opens as a stream on Linux and read as no nodes
  const Status folder = make_topology(spec, &none);
  EXPECT_EQ(folder.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(folder.message().find("is a folder, not a file"), std::string::npos) << folder.message();
}

}  // namespace
}  // namespace perigee::collectives::links
