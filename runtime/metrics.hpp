// MetricsWriter: one JSON object per line (JSONL) in <run_dir>/metrics.jsonl, flushed per record,
// so a run killed at any moment leaves every completed record readable.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/status.hpp"

namespace perigee::runtime {

struct MetricField {
  std::string key;
  double number = 0.0;
  std::string text;  // used when is_text
  bool is_text = false;
};

inline MetricField metric(std::string key, double value) {
  return {std::move(key), value, {}, false};
}
inline MetricField metric_text(std::string key, std::string value) {
  return {std::move(key), 0.0, std::move(value), true};
}

class MetricsWriter {
 public:
  MetricsWriter() = default;
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  Status open(const std::string& path);
  bool is_open() const { return file_ != nullptr; }
  Status write(const std::vector<MetricField>& fields);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace perigee::runtime
