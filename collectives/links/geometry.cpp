// Circular-orbit positions, period, line of sight and latitude (see geometry.hpp).
#include "collectives/links/geometry.hpp"

#include <algorithm>
#include <cmath>

namespace perigee::collectives::links {

namespace {
double dot(const Vec3& a, const Vec3& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}
constexpr double kDeg = kPi / 180.0;
}  // namespace

double norm_m(const Vec3& v) {
  return std::sqrt(dot(v, v));
}

double distance_m(const Vec3& a, const Vec3& b) {
  return norm_m(Vec3{a.x - b.x, a.y - b.y, a.z - b.z});
}

double orbital_period_s(double altitude_m) {
  const double r = kEarthRadiusM + altitude_m;
  return 2.0 * kPi * std::sqrt(r * r * r / kEarthMu);
}

double max_isl_length_m(double altitude_m, double grazing_m) {
  const double r = kEarthRadiusM + altitude_m;
  const double g = kEarthRadiusM + grazing_m;
  if (g >= r) return 0.0;
  return 2.0 * std::sqrt(r * r - g * g);
}

double segment_min_radius_m(const Vec3& a, const Vec3& b) {
  const Vec3 d{b.x - a.x, b.y - a.y, b.z - a.z};
  const double dd = dot(d, d);
  if (dd == 0.0) return norm_m(a);
  // Parameter of the closest point to the origin on the line a + s d, clamped to the segment.
  const double s = std::clamp(-dot(a, d) / dd, 0.0, 1.0);
  return norm_m(Vec3{a.x + s * d.x, a.y + s * d.y, a.z + s * d.z});
}

bool line_of_sight(const Vec3& a, const Vec3& b, double grazing_m) {
  return segment_min_radius_m(a, b) >= kEarthRadiusM + grazing_m;
}

double latitude_deg(const Vec3& p) {
  const double r = norm_m(p);
  if (r == 0.0) return 0.0;
  return std::asin(std::clamp(p.z / r, -1.0, 1.0)) / kDeg;
}

double WalkerShell::radius_m() const {
  return kEarthRadiusM + altitude_m;
}

double WalkerShell::period_s() const {
  return orbital_period_s(altitude_m);
}

Vec3 WalkerShell::position(int plane, int index, double t_s) const {
  const double r = radius_m();
  const double total = static_cast<double>(planes) * per_plane;
  const double raan = plane * raan_span_deg / planes * kDeg;
  const double mean_motion = 2.0 * kPi / period_s();  // rad/s
  const double u = 2.0 * kPi * index / per_plane + 2.0 * kPi * phasing * plane / total + mean_motion * t_s;
  const double inc = inclination_deg * kDeg;
  const double cu = std::cos(u), su = std::sin(u);
  const double co = std::cos(raan), so = std::sin(raan);
  const double ci = std::cos(inc), si = std::sin(inc);
  return Vec3{r * (co * cu - so * ci * su), r * (so * cu + co * ci * su), r * si * su};
}

}  // namespace perigee::collectives::links
