#include "runtime/orbit_clock.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/store.hpp"

namespace perigee::runtime {

bool OrbitEpoch::same_orbit(const OrbitConfig& orbit) const {
  return altitude_km == orbit.altitude_km && beta_deg == orbit.beta_deg && phase_deg == orbit.phase_deg &&
         time_scale == orbit.time_scale;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Status read_orbit_epoch(const std::string& dir, OrbitEpoch* out) {
  const std::string path = (std::filesystem::path(dir) / kOrbitClockFile).string();
  std::ifstream in(path);
  if (!in.is_open()) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return make_error(StatusCode::kNotFound, "no ", path);
    return make_error(StatusCode::kIoError, "cannot open ", path);
  }
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  OrbitEpoch e;
  const char* keys[] = {"epoch_unix", "altitude_km", "beta_deg", "phase_deg", "time_scale"};
  double* fields[] = {&e.epoch_unix, &e.altitude_km, &e.beta_deg, &e.phase_deg, &e.time_scale};
  for (int i = 0; i < 5; ++i) {
    PERIGEE_REQUIRE(j.is_object() && j.contains(keys[i]) && j[keys[i]].is_number(), StatusCode::kIoError,
                    path, ": not an orbit clock file (no number \"", keys[i], "\")");
    *fields[i] = j[keys[i]].get<double>();
  }
  PERIGEE_REQUIRE(e.epoch_unix > 0.0, StatusCode::kIoError, path, ": epoch_unix ", e.epoch_unix,
                  " is not > 0");
  *out = e;
  return Status::ok();
}

Status write_orbit_epoch(const std::string& dir, const OrbitEpoch& e) {
  nlohmann::json j;
  j["epoch_unix"] = e.epoch_unix;
  j["altitude_km"] = e.altitude_km;
  j["beta_deg"] = e.beta_deg;
  j["phase_deg"] = e.phase_deg;
  j["time_scale"] = e.time_scale;
  return checkpoint::write_file_atomic(dir, kOrbitClockFile, j.dump(2) + "\n");
}

Status remove_orbit_clock_leftover(const std::string& dir, std::string* removed) {
  removed->clear();
  const std::filesystem::path path = std::filesystem::path(dir) / (std::string(kOrbitClockFile) + ".tmp");
  std::error_code ec;
  // As the store's own cleanup: a file (a link to one is removed, not its target); absent is nothing to do.
  if (!std::filesystem::is_regular_file(path, ec)) return Status::ok();
  std::filesystem::remove(path, ec);
  PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "removing '", path.string(), "': ", ec.message());
  *removed = path.string();
  return checkpoint::fsync_dir(dir);  // the removal holds across a cut, as the store's cleanup does
}

Status resolve_orbit_epoch(const OrbitConfig& orbit, const std::string& dir, bool resume, double now_unix,
                           double* epoch_unix, std::string* how, std::string* warning) {
  warning->clear();
  if (orbit.epoch_unix > 0.0) {
    *epoch_unix = orbit.epoch_unix;
    *how = str_cat("epoch_unix ", fixed(orbit.epoch_unix, 1), " from the config (",
                   fixed(now_unix - orbit.epoch_unix, 1), " s ago)");
    return Status::ok();
  }
  std::string note;
  if (resume) {
    OrbitEpoch stored;
    const Status s = read_orbit_epoch(dir, &stored);
    if (s.is_ok() && stored.same_orbit(orbit)) {
      if (now_unix >= stored.epoch_unix) {
        *epoch_unix = stored.epoch_unix;
        *how = str_cat("continued from ", dir, "/", kOrbitClockFile, " (the first launch, ",
                       fixed(now_unix - stored.epoch_unix, 1), " s ago)");
        return Status::ok();
      }
      // The system clock reads earlier than the first launch: not yet synchronised after the power cut.
      // The stored epoch was taken on a good clock; it stays for the launches that follow the sync, and
      // this launch runs on a clock of its own.
      *epoch_unix = now_unix;
      *how = str_cat("started now at phase ", orbit.phase_deg, " deg for this launch only");
      *warning =
          str_cat("orbit clock: the system clock is ", fixed(stored.epoch_unix - now_unix, 1),
                  " s behind the first launch's epoch in ", dir, "/", kOrbitClockFile,
                  " (not synchronised after the power cut?): this launch places the shadows from "
                  "phase ",
                  orbit.phase_deg, " deg now; the file is kept for the launches after the clock is set");
      return Status::ok();
    }
    if (s.is_ok()) {
      note = str_cat("; ", kOrbitClockFile,
                     " there was for another orbit (altitude, beta, phase or time scale)");
    } else if (s.code() != StatusCode::kNotFound) {
      *warning = str_cat("orbit clock: replacing ", s.message());
    }
  }
  OrbitEpoch e{now_unix, orbit.altitude_km, orbit.beta_deg, orbit.phase_deg, orbit.time_scale};
  PERIGEE_CHECK(write_orbit_epoch(dir, e));
  *epoch_unix = now_unix;
  *how = str_cat("started now at phase ", orbit.phase_deg, " deg, kept in ", dir, "/", kOrbitClockFile, note);
  return Status::ok();
}

}  // namespace perigee::runtime
