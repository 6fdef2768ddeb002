// Circular-orbit eclipse model, low-precision sun position, checkpoint schedules.
#include "checkpoint/eclipse.hpp"

#include <algorithm>
#include <cmath>

namespace perigee::checkpoint {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;

double wrap_2pi(double x) {
  x = std::fmod(x, 2.0 * kPi);
  return x < 0.0 ? x + 2.0 * kPi : x;
}

double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

}  // namespace

std::array<double, 3> sun_direction_eci(double unix_time_s) {
  const double d = unix_time_s / 86400.0 + 2440587.5 - 2451545.0;  // days since J2000.0
  const double mean_longitude = (280.460 + 0.9856474 * d) * kDeg;
  const double mean_anomaly = (357.528 + 0.9856003 * d) * kDeg;
  const double lambda =
      mean_longitude + (1.915 * std::sin(mean_anomaly) + 0.020 * std::sin(2.0 * mean_anomaly)) * kDeg;
  const double epsilon = (23.439 - 0.0000004 * d) * kDeg;
  return {std::cos(lambda), std::cos(epsilon) * std::sin(lambda), std::sin(epsilon) * std::sin(lambda)};
}

namespace {

// Orbit normal and the in-plane basis (P to the ascending node, Q 90 deg ahead).
struct OrbitFrame {
  std::array<double, 3> n, p, q;
};

OrbitFrame orbit_frame(double inclination_rad, double raan_rad) {
  const double si = std::sin(inclination_rad), ci = std::cos(inclination_rad);
  const double so = std::sin(raan_rad), co = std::cos(raan_rad);
  return OrbitFrame{{si * so, -si * co, ci}, {co, so, 0.0}, {-ci * so, ci * co, si}};
}

}  // namespace

double beta_angle_deg(double inclination_deg, double raan_deg, double unix_time_s) {
  const OrbitFrame f = orbit_frame(inclination_deg * kDeg, raan_deg * kDeg);
  const double s = std::clamp(dot(sun_direction_eci(unix_time_s), f.n), -1.0, 1.0);
  return std::asin(s) / kDeg;
}

Status EclipseModel::from_beta(double altitude_km, double beta_deg, double phase_deg, EclipseModel* out) {
  PERIGEE_REQUIRE(std::isfinite(altitude_km) && altitude_km > 0.0, StatusCode::kInvalidArgument,
                  "orbit altitude must be > 0 km (got ", altitude_km, ")");
  PERIGEE_REQUIRE(std::isfinite(beta_deg) && std::abs(beta_deg) <= 90.0, StatusCode::kInvalidArgument,
                  "beta angle must be in [-90, 90] deg (got ", beta_deg, ")");
  PERIGEE_REQUIRE(std::isfinite(phase_deg), StatusCode::kInvalidArgument, "orbit phase must be finite");
  EclipseModel m;
  m.altitude_km_ = altitude_km;
  m.beta_rad_ = beta_deg * kDeg;
  m.phase0_rad_ = wrap_2pi(phase_deg * kDeg);
  const double a = kEarthRadiusKm + altitude_km;
  m.period_s_ = 2.0 * kPi * std::sqrt(a * a * a / kEarthMuKm3PerS2);
  const double cos_rho = std::sqrt(1.0 - (kEarthRadiusKm / a) * (kEarthRadiusKm / a));
  const double cos_beta = std::cos(m.beta_rad_);
  m.half_angle_rad_ = cos_beta > cos_rho ? std::acos(cos_rho / cos_beta) : 0.0;
  *out = m;
  return Status::ok();
}

Status EclipseModel::from_elements(double altitude_km, double inclination_deg, double raan_deg,
                                   double arg_latitude_deg, double unix_time_s, EclipseModel* out) {
  PERIGEE_REQUIRE(std::isfinite(inclination_deg) && inclination_deg >= 0.0 && inclination_deg <= 180.0,
                  StatusCode::kInvalidArgument, "inclination must be in [0, 180] deg (got ", inclination_deg,
                  ")");
  PERIGEE_REQUIRE(std::isfinite(raan_deg) && std::isfinite(arg_latitude_deg) && std::isfinite(unix_time_s),
                  StatusCode::kInvalidArgument, "orbital elements and epoch must be finite");
  const OrbitFrame f = orbit_frame(inclination_deg * kDeg, raan_deg * kDeg);
  const std::array<double, 3> s = sun_direction_eci(unix_time_s);
  const double beta = std::asin(std::clamp(dot(s, f.n), -1.0, 1.0));
  // Argument of latitude of the sun's projection onto the orbit plane = orbit noon.
  const double noon = std::atan2(dot(s, f.q), dot(s, f.p));
  PERIGEE_CHECK(from_beta(altitude_km, beta / kDeg, (arg_latitude_deg * kDeg - noon) / kDeg, out));
  return Status::ok();
}

double EclipseModel::beta_deg() const {
  return beta_rad_ / kDeg;
}

double EclipseModel::critical_beta_deg() const {
  return std::asin(kEarthRadiusKm / (kEarthRadiusKm + altitude_km_)) / kDeg;
}

double EclipseModel::phase_rad(double t_s) const {
  return wrap_2pi(phase0_rad_ + 2.0 * kPi * t_s / period_s_);
}

bool EclipseModel::in_shadow(double t_s) const {
  if (!has_eclipse()) return false;
  return std::abs(phase_rad(t_s) - kPi) < half_angle_rad_;
}

std::optional<ShadowInterval> EclipseModel::next_shadow(double t_s) const {
  if (!has_eclipse()) return std::nullopt;
  const double omega = 2.0 * kPi / period_s_;
  // Shadow k is centred where phase0 + omega t = pi + 2 pi k.
  const double centre0 = (kPi - phase0_rad_) / omega;
  const double half = half_angle_rad_ / omega;
  const double exit0 = centre0 + half;
  double k = std::floor((t_s - exit0) / period_s_) + 1.0;
  double exit = exit0 + k * period_s_;
  if (exit <= t_s) {  // rounding at the boundary
    k += 1.0;
    exit += period_s_;
  }
  return ShadowInterval{exit - 2.0 * half, exit, static_cast<int64_t>(k)};
}

std::vector<ShadowInterval> EclipseModel::shadows(double t0_s, double t1_s) const {
  std::vector<ShadowInterval> out;
  std::optional<ShadowInterval> s = next_shadow(t0_s);
  while (s && s->entry_s < t1_s) {
    out.push_back(*s);
    s = ShadowInterval{s->entry_s + period_s_, s->exit_s + period_s_, s->orbit + 1};
  }
  return out;
}

std::optional<double> EclipseModel::next_checkpoint_time(double t_s, double margin_s) const {
  const std::optional<ShadowInterval> s = next_shadow(t_s);
  if (!s) return std::nullopt;
  return std::max(t_s, s->entry_s - margin_s);
}

bool EclipseModel::checkpoint_due(double t_s, double margin_s, double step_s) const {
  const std::optional<ShadowInterval> s = next_shadow(t_s);
  return s.has_value() && t_s + std::max(0.0, step_s) >= s->entry_s - margin_s;
}

}  // namespace perigee::checkpoint
