// The orbit clock of the eclipse policy ([orbit] eclipse): mission seconds since the satellite was at
// [orbit] phase_deg, t = (unix_now - epoch) * time_scale.
//
// The epoch is [orbit] epoch_unix when set (the ephemeris). Otherwise it is the run's first launch,
// which rank 0 keeps in <checkpoint dir>/orbit.json with the orbit keys it belongs to. A relaunch after
// a power cut that resumes from that folder continues the clock: the satellite has moved on while the
// power was off, and a clock restarted at phase_deg would place the next shadow wrongly (the eclipse
// checkpoint late, or the next cut without one). The file is written atomically (temporary file,
// fsync, rename; rank 0 removes a temporary file left by a cut when it opens the folder) and is a few
// lines of JSON:
//   {"epoch_unix": 1795000000.25, "altitude_km": 550.0, "beta_deg": 0.0, "phase_deg": 0.0,
//    "time_scale": 1.0}
#pragma once

#include <string>

#include "core/status.hpp"
#include "runtime/config.hpp"

namespace perigee::runtime {

inline constexpr char kOrbitClockFile[] = "orbit.json";

struct OrbitEpoch {
  double epoch_unix = 0.0;
  double altitude_km = 0.0, beta_deg = 0.0, phase_deg = 0.0, time_scale = 1.0;
  // The orbit keys of `orbit` (epoch_unix is not compared).
  bool same_orbit(const OrbitConfig& orbit) const;
};

// <dir>/orbit.json: kNotFound when absent; kIoError naming the file when unreadable or malformed.
Status read_orbit_epoch(const std::string& dir, OrbitEpoch* out);
Status write_orbit_epoch(const std::string& dir, const OrbitEpoch& epoch);
// The process that owns <dir> (rank 0), when it opens the folder: removes <dir>/orbit.json.tmp, what a
// write_orbit_epoch cut before its rename leaves (never read, and only truncated by the next write).
// *removed is its path, or "" when there was none; orbit.json itself is never touched. A folder of that
// name stays (a write fails on it, naming it).
Status remove_orbit_clock_leftover(const std::string& dir, std::string* removed);

// The epoch for this launch (rank 0): orbit.epoch_unix when > 0; else the one in <dir>/orbit.json when
// `resume` and it belongs to the same orbit keys; else now_unix, then stored in <dir> (which exists).
// *how says which, for the log; *warning is "" or a warning to log:
// - a malformed file is replaced;
// - a stored epoch later than now_unix (a system clock not yet synchronised after a cut) is kept for
//   the launches after the sync, and this launch alone starts at now_unix.
Status resolve_orbit_epoch(const OrbitConfig& orbit, const std::string& dir, bool resume, double now_unix,
                           double* epoch_unix, std::string* how, std::string* warning);

// Seconds since the Unix epoch, from the system clock.
double unix_now();

}  // namespace perigee::runtime
