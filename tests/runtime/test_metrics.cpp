// MetricsWriter: one JSON record a line, appended; a line torn by a cut launch (a full disk, a kill in
// the middle of a write) is ended before the next launch appends, so every later record parses.
#include "runtime/metrics.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace perigee::runtime {
namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Metrics, ATornLastLineIsEndedBeforeTheNextLaunchAppends) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("perigee_metrics_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "metrics.jsonl").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"type\":\"train\",\"step\":1.0}\n{\"type\":\"train\",\"st";  // cut mid-record
  }
  {
    MetricsWriter w;
    PERIGEE_CHECK_OR_DIE(w.open(path));
    PERIGEE_CHECK_OR_DIE(w.write({metric_text("type", "checkpoint_load"), metric("step", 1.0)}));
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u) << bytes_of(path);
  EXPECT_EQ(lines[1], "{\"type\":\"train\",\"st");
  EXPECT_EQ(lines[2], "{\"type\":\"checkpoint_load\",\"step\":1.0}");
  // A whole file, and a new one, get no extra newline.
  {
    MetricsWriter w;
    PERIGEE_CHECK_OR_DIE(w.open(path));
    PERIGEE_CHECK_OR_DIE(w.write({metric("step", 2.0)}));
  }
  EXPECT_EQ(lines_of(path).size(), 4u) << bytes_of(path);
  const std::string fresh = (dir / "fresh.jsonl").string();
  {
    MetricsWriter w;
    PERIGEE_CHECK_OR_DIE(w.open(fresh));
    PERIGEE_CHECK_OR_DIE(w.write({metric("step", 3.0)}));
  }
  EXPECT_EQ(bytes_of(fresh), "{\"step\":3.0}\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace perigee::runtime
