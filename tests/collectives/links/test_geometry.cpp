// Geometry of Starlink shell 1 against published values (Hypatia constants; reference section 4.3),
// each within 0.5%: neighbour distances and latency, max ISL length, orbital period, the
// cross-plane distance range over an orbit, and the line-of-sight test.
#include <gtest/gtest.h>

#include <cmath>

#include "collectives/links/geometry.hpp"

namespace perigee::collectives::links {
namespace {

constexpr double kRel = 0.005;  // 0.5 %

WalkerShell shell1() {
  WalkerShell s;
  s.planes = 72;
  s.per_plane = 22;
  s.altitude_m = 550e3;
  s.inclination_deg = 53.0;
  s.raan_span_deg = 360.0;
  return s;
}

TEST(LinksGeometry, IntraPlaneNeighbourDistanceAndLatency) {
  const WalkerShell s = shell1();
  for (double t : {0.0, 1000.0, 3333.3}) {
    const double d = distance_m(s.position(5, 3, t), s.position(5, 4, t));
    EXPECT_NEAR(d, 1972e3, 1972e3 * kRel) << "t=" << t;
    EXPECT_NEAR(d / kSpeedOfLight, 6.58e-3, 6.58e-3 * kRel);
  }
}

TEST(LinksGeometry, MaxIslLengthAt550KmWith80KmGrazing) {
  EXPECT_NEAR(max_isl_length_m(550e3, 80e3), 5016.6e3, 5016.6e3 * kRel);
  EXPECT_EQ(max_isl_length_m(80e3, 550e3), 0.0);
}

TEST(LinksGeometry, OrbitalPeriodAt550Km) {
  EXPECT_NEAR(orbital_period_s(550e3) / 60.0, 95.6, 95.6 * kRel);
  EXPECT_NEAR(shell1().period_s(), orbital_period_s(550e3), 1e-9);
}

TEST(LinksGeometry, SatellitesStayOnTheirOrbit) {
  const WalkerShell s = shell1();
  for (double t : {0.0, 777.0, 4000.0}) {
    EXPECT_NEAR(norm_m(s.position(17, 9, t)), kEarthRadiusM + 550e3, 1e-3);
    EXPECT_LE(std::abs(latitude_deg(s.position(17, 9, t))), 53.0 + 1e-9);
  }
  // After one period every satellite is back where it started.
  const Vec3 a = s.position(3, 2, 100.0), b = s.position(3, 2, 100.0 + s.period_s());
  EXPECT_LT(distance_m(a, b), 1.0);
}

TEST(LinksGeometry, CrossPlaneDistanceRangesOverTheOrbit) {
  const WalkerShell s = shell1();
  double dmin = 1e30, dmax = 0.0, lat_at_min = 0.0, lat_at_max = 0.0;
  const int samples = 4000;
  for (int k = 0; k < samples; ++k) {
    const double t = s.period_s() * k / samples;
    const Vec3 a = s.position(0, 0, t), b = s.position(1, 0, t);
    const double d = distance_m(a, b);
    const double lat = latitude_deg(a);
    if (d < dmin) dmin = d, lat_at_min = lat;
    if (d > dmax) dmax = d, lat_at_max = lat;
  }
  EXPECT_NEAR(dmin, 364e3, 364e3 * kRel);
  EXPECT_NEAR(dmax, 604e3, 604e3 * kRel);
  EXPECT_NEAR(std::abs(lat_at_min), 53.0, 0.5);
  EXPECT_NEAR(lat_at_max, 0.0, 0.5);
  // 1.2-2.0 ms one way.
  EXPECT_NEAR(dmin / kSpeedOfLight, 1.214e-3, 1.214e-3 * kRel);
  EXPECT_NEAR(dmax / kSpeedOfLight, 2.015e-3, 2.015e-3 * kRel);
}

TEST(LinksGeometry, LineOfSightCutsChordsBelowTheGrazingHeight) {
  WalkerShell s = shell1();
  s.planes = 1;
  s.per_plane = 4;  // neighbours 90 deg apart: the chord passes r cos 45 deg = 4899 km from the centre
  const Vec3 a = s.position(0, 0, 0.0), b = s.position(0, 1, 0.0);
  EXPECT_NEAR(segment_min_radius_m(a, b), (kEarthRadiusM + 550e3) * std::cos(kPi / 4), 1.0);
  EXPECT_FALSE(line_of_sight(a, b, 80e3));
  // A chord just shorter than the max ISL length keeps line of sight, one just longer does not.
  const double r = kEarthRadiusM + 550e3;
  const double half = max_isl_length_m(550e3, 80e3) / 2.0;
  const double ang = std::asin(half / r);
  for (double f : {0.99, 1.01}) {
    const Vec3 p{r * std::cos(ang * f), r * std::sin(ang * f), 0.0};
    const Vec3 q{r * std::cos(ang * f), -r * std::sin(ang * f), 0.0};
    EXPECT_EQ(line_of_sight(p, q, 80e3), f < 1.0) << "f=" << f;
  }
}

}  // namespace
}  // namespace perigee::collectives::links
