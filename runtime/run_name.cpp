#include "runtime/run_name.hpp"

#include <ctime>
#include <filesystem>
#include <system_error>

namespace perigee::runtime {

Status claim_timestamped_run_dir(const std::string& root, long long stamp, std::string* name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(root, ec);
  PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot create run folder root ", root, ": ", ec.message());
  const std::time_t t = static_cast<std::time_t>(stamp);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64] = {0};
  std::strftime(buf, sizeof(buf), "run-%Y%m%d-%H%M%S", &tm);
  constexpr int kMaxTries = 1000;
  for (int i = 1; i <= kMaxTries; ++i) {
    const std::string candidate = i == 1 ? std::string(buf) : str_cat(buf, "-", i);
    // create_directory is false (no error) when the folder already exists: another run has it.
    if (fs::create_directory(fs::path(root) / candidate, ec)) {
      *name = candidate;
      return Status::ok();
    }
    PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot create run directory ",
                    (fs::path(root) / candidate).string(), ": ", ec.message());
  }
  return make_error(StatusCode::kIoError, "cannot name a new run in ", root, ": ", buf, " to ", buf, "-",
                    kMaxTries, " are all taken (set [run] name)");
}

}  // namespace perigee::runtime
