// Orbit-aware checkpoint scheduling. EclipseModel: a circular orbit and a cylindrical Earth shadow
// (Earth radius R, sun rays parallel). With a = R + altitude, the Earth's angular radius seen from
// the orbit is rho = asin(R / a); the orbit plane makes the angle beta with the sun direction and
// theta is the satellite's angle from orbit noon (the point nearest the sun). The satellite is in
// shadow when cos(theta) < -cos(rho) / cos(beta): one shadow per orbit of half-angle
// acos(cos(rho) / cos(beta)) centred on orbit midnight, none when |beta| >= rho. Period
// T = 2 pi sqrt(a^3 / mu). At 550 km and beta = 0: T = 95.6 min, shadow 35.6 min (37 %).
// beta comes either directly or from inclination, RAAN and a date with a low-precision sun model.
//
// CheckpointSchedule: one small interface for the three policies (every N steps, every T
// seconds, right before each shadow entry) with a ScheduleClock that maps wall time to mission
// time (time_scale 60 runs one 96-minute orbit in 96 s of demo time).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
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
  // Which shadow: the k-th after the one centred nearest before the epoch (integral, so the same
  // shadow seen from two times compares equal, where its float entry time may differ in the last bit).
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

// Mission time = mission_epoch_s + wall time * time_scale (wall time: seconds since the run began).
struct ScheduleClock {
  double time_scale = 1.0;
  double mission_epoch_s = 0.0;
  double mission(double wall_s) const { return mission_epoch_s + wall_s * time_scale; }
  double wall(double mission_s) const { return (mission_s - mission_epoch_s) / time_scale; }
};

class CheckpointSchedule {
 public:
  virtual ~CheckpointSchedule() = default;
  // Whether to checkpoint now that `step` steps are complete, `wall_s` seconds into the run.
  virtual bool due(int64_t step, double wall_s) const = 0;
  // Records that the checkpoint of `step` was taken at `wall_s`.
  virtual void mark_taken(int64_t step, double wall_s) = 0;
  // Wall time of the next planned checkpoint (<= wall_s: now); nullopt when not time-based or
  // none is planned.
  virtual std::optional<double> next_time(double wall_s) const = 0;
  virtual std::string describe() const = 0;
};

// Every N steps: due at steps N, 2N, ... (the same steps after a resume).
class StepSchedule : public CheckpointSchedule {
 public:
  explicit StepSchedule(int64_t every_steps) : every_(every_steps) {}
  bool due(int64_t step, double wall_s) const override;
  void mark_taken(int64_t step, double wall_s) override;
  std::optional<double> next_time(double) const override { return std::nullopt; }
  std::string describe() const override;

 private:
  int64_t every_;
  int64_t last_step_ = -1;
};

// Every T mission seconds since the run began (or since the last checkpoint).
class IntervalSchedule : public CheckpointSchedule {
 public:
  IntervalSchedule(double interval_s, ScheduleClock clock = {});
  bool due(int64_t step, double wall_s) const override;
  void mark_taken(int64_t step, double wall_s) override;
  std::optional<double> next_time(double wall_s) const override;
  std::string describe() const override;

 private:
  double interval_s_;
  ScheduleClock clock_;
  double last_mission_s_;
};

// Once per shadow, from `margin_s` mission seconds before its entry until its exit (power may
// hold out a while on battery). The margin must cover the checkpoint's own duration (in mission
// time: wall seconds x time_scale) plus a safety allowance. Without eclipses (high beta) it
// falls back to every `fallback_interval_s` mission seconds (0: never).
class EclipseSchedule : public CheckpointSchedule {
 public:
  EclipseSchedule(EclipseModel model, double margin_s, ScheduleClock clock = {},
                  double fallback_interval_s = 0.0);
  bool due(int64_t step, double wall_s) const override;
  void mark_taken(int64_t step, double wall_s) override;
  std::optional<double> next_time(double wall_s) const override;
  std::string describe() const override;
  const EclipseModel& model() const { return model_; }

 private:
  // Mission time of the first checkpoint target (entry - margin) not yet covered, seen from t.
  std::optional<double> pending_target(double t) const;

  EclipseModel model_;
  double margin_s_;
  ScheduleClock clock_;
  double fallback_s_;
  double last_mission_s_ = -std::numeric_limits<double>::infinity();
};

}  // namespace perigee::checkpoint
