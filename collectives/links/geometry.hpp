// Orbital geometry of circular-orbit Walker shells: constants (Hypatia's WGS72 Earth radius),
// orbital period, satellite positions in an Earth-centred inertial frame, latitude, and the
// line-of-sight test for a laser link (the chord must stay above Earth radius + a grazing height).
// Earth's rotation is ignored: distances and latitudes do not depend on it.
#pragma once

namespace perigee::collectives::links {

inline constexpr double kEarthRadiusM = 6378135.0;    // WGS72, as Hypatia uses
inline constexpr double kEarthMu = 3.986004418e14;    // m^3/s^2
inline constexpr double kSpeedOfLight = 299792458.0;  // m/s
inline constexpr double kPi = 3.14159265358979323846;

struct Vec3 {
  double x = 0.0, y = 0.0, z = 0.0;
};

double distance_m(const Vec3& a, const Vec3& b);
double norm_m(const Vec3& v);

// Orbital period (s) of a circular orbit at altitude_m above kEarthRadiusM.
double orbital_period_s(double altitude_m);

// Longest chord between two satellites at altitude_m that stays above grazing_m:
// 2 sqrt((R+h)^2 - (R+g)^2). 0 when grazing_m >= altitude_m.
double max_isl_length_m(double altitude_m, double grazing_m);

// Closest approach of the segment [a, b] to Earth's centre (m).
double segment_min_radius_m(const Vec3& a, const Vec3& b);

// Line of sight: the segment's closest approach to Earth's centre is >= R + grazing_m.
bool line_of_sight(const Vec3& a, const Vec3& b, double grazing_m);

// Geocentric latitude (deg) of a position.
double latitude_deg(const Vec3& p);

// A circular Walker shell: `planes` x `per_plane` satellites at one altitude and inclination,
// plane RAANs spread evenly over raan_span_deg (360: Walker delta, 180: Walker star), phasing F:
// neighbouring planes are offset in true anomaly by F * 360 / (planes * per_plane) degrees.
struct WalkerShell {
  int planes = 1;
  int per_plane = 1;
  double altitude_m = 550e3;
  double inclination_deg = 53.0;
  double raan_span_deg = 360.0;
  int phasing = 0;

  double radius_m() const;
  double period_s() const;
  // Position of satellite `index` of plane `plane` at t_s seconds after the epoch (at the epoch,
  // satellite 0 of plane 0 is at its ascending node).
  Vec3 position(int plane, int index, double t_s) const;
};

}  // namespace perigee::collectives::links
