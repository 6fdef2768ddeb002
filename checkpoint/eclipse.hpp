// Orbit-aware checkpoint scheduling. EclipseModel: a circular orbit and a cylindrical Earth shadow
// (Earth radius R, sun rays parallel). With a = R + altitude, the Earth's angular radius seen from
// the orbit is rho = asin(R / a); the orbit plane makes the angle beta with the sun direction and
// theta is the satellite's angle from orbit noon (the point nearest the sun). The satellite is in
// shadow when cos(theta) < -cos(rho) / cos(beta): one shadow per orbit of half-angle
// acos(cos(rho) / cos(beta)) centred on orbit midnight, none when |beta| >= rho. Period
// T = 2 pi sqrt(a^3 / mu). At 550 km and beta = 0: T = 95.6 min, shadow 35.6 min (37 %).
// beta comes either directly or from inclination, RAAN and a date with a low-precision sun model.
// The trainer's eclipse gate (runtime/trainer_checkpointing.cpp) uses checkpoint_due and next_shadow
// on its orbit clock (runtime/orbit_clock.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/status.hpp"

namespace perigee::checkpoint {

inline constexpr double kEarthRadiusKm = 6378.137;       // WGS-84 equatorial radius
inline constexpr double kEarthMuKm3PerS2 = 398600.4418;  // GM of the Earth

// Unit vector from the Earth to the sun in the equatorial (ECI, mean equinox of date) frame at a
// Unix time, from the Astronomical Almanac's low-precision formulae (about 0.01 deg, 1950-2050).
std::array<double, 3> sun_direction_eci(double unix_time_s);

// Beta angle (deg) of a circular orbit of the given inclination and RAAN at a Unix time.
double beta_angle_deg(double inclination_deg, double raan_deg, double unix_time_s);

struct ShadowInterval {
  double entry_s = 0.0;  // seconds since the model's epoch
  double exit_s = 0.0;
  // Which shadow: the k-th after shadow 0, whose centre lies within half an orbit of the epoch (after
  // it when the epoch's phase is below 180 degrees). Integral, so the same shadow seen from two times
  // compares equal, where its float entry time may differ in the last bit.
  int64_t orbit = 0;
  double duration_s() const { return exit_s - entry_s; }
};

class EclipseModel {
 public:
  EclipseModel() = default;

  // altitude_km > 0; |beta_deg| <= 90; phase_deg: the satellite's angle from orbit noon at t = 0,
  // in the direction of motion (180 = orbit midnight, the middle of the shadow).
  static Status from_beta(double altitude_km, double beta_deg, double phase_deg, EclipseModel* out);
  // From orbital elements at epoch `unix_time_s` (UTC): inclination, right ascension of the
  // ascending node, argument of latitude of the satellite. The sun is held at its epoch position
  // (it moves about 1 deg a day) and nodal precession is ignored: rebuild the model every day.
  static Status from_elements(double altitude_km, double inclination_deg, double raan_deg,
                              double arg_latitude_deg, double unix_time_s, EclipseModel* out);

  double altitude_km() const { return altitude_km_; }
  double beta_deg() const;
  double period_s() const { return period_s_; }
  // Earth's angular radius from the orbit: no shadow when |beta| >= this.
  double critical_beta_deg() const;
  bool has_eclipse() const { return half_angle_rad_ > 0.0; }
  double sunlit_s() const { return period_s_ - eclipse_duration_s(); }
  double eclipse_duration_s() const { return period_s_ * half_angle_rad_ / kPi; }
  double eclipse_fraction() const { return half_angle_rad_ / kPi; }

  // Angle from orbit noon at time t (radians, in [0, 2 pi)).
  double phase_rad(double t_s) const;
  bool in_shadow(double t_s) const;
  // The shadow in progress at t, or else the next one (the first with exit > t).
  std::optional<ShadowInterval> next_shadow(double t_s) const;
  // Every shadow that overlaps [t0, t1).
  std::vector<ShadowInterval> shadows(double t0_s, double t1_s) const;
  // When to checkpoint ahead of the next power loss: next_shadow(t).entry - margin, but not
  // before t (t itself when already inside the margin or in shadow). nullopt without eclipses.
  std::optional<double> next_checkpoint_time(double t_s, double margin_s) const;
  // Whether a checkpoint at t (a step boundary) is the one for the next shadow when the next boundary
  // comes step_s later: t is past entry - margin, or the next boundary would be. Without the
  // look-ahead a step longer than the margin carries the checkpoint into the shadow.
  bool checkpoint_due(double t_s, double margin_s, double step_s) const;

 private:
  static constexpr double kPi = 3.14159265358979323846;
  double altitude_km_ = 0.0;
  double beta_rad_ = 0.0;
  double phase0_rad_ = 0.0;
  double period_s_ = 0.0;
  double half_angle_rad_ = 0.0;  // 0: no shadow
};

}  // namespace perigee::checkpoint
