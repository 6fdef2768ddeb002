#include "runtime/metrics.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

namespace perigee::runtime {

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status MetricsWriter::open(const std::string& path) {
  // A launch cut mid-record (a full disk, a kill) left a line without its newline: end it, so this
  // launch's first record starts a line of its own instead of making the torn one longer.
  bool torn = false;
  if (std::FILE* in = std::fopen(path.c_str(), "rb")) {
    torn = std::fseek(in, -1, SEEK_END) == 0 && std::fgetc(in) != '\n';
    std::fclose(in);
  }
  if (file_ != nullptr) std::fclose(file_);  // again: a run folder made anew
  file_ = std::fopen(path.c_str(), "a");
  PERIGEE_REQUIRE(file_ != nullptr, StatusCode::kIoError, "cannot open metrics file ", path);
  path_ = path;
  PERIGEE_REQUIRE(!torn || (std::fputc('\n', file_) == '\n' && std::fflush(file_) == 0), StatusCode::kIoError,
                  "cannot write metrics file ", path_);
  return Status::ok();
}

Status MetricsWriter::write(const std::vector<MetricField>& fields) {
  if (file_ == nullptr) return Status::ok();
  nlohmann::ordered_json j;
  for (const auto& f : fields) {
    if (f.is_text) {
      j[f.key] = f.text;
    } else if (std::isfinite(f.number)) {
      j[f.key] = f.number;
    } else {
      j[f.key] = std::isnan(f.number) ? "nan" : (f.number > 0 ? "inf" : "-inf");
    }
  }
  // Text from outside (a path with bytes that are not UTF-8) is written with U+FFFD, not thrown on.
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  PERIGEE_REQUIRE(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
                  StatusCode::kIoError, "cannot write metrics file ", path_);
  return Status::ok();
}

}  // namespace perigee::runtime
