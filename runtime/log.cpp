#include "runtime/log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <vector>

namespace perigee::runtime::log {
namespace {

struct State {
  std::mutex mu;
  int rank = 0;
  Level console_level = Level::kInfo;
  std::ofstream file;
  std::vector<std::string> pending;  // lines written before the file was opened
};

State& state() {
  static State s;
  return s;
}

const char* level_tag(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug ";
    case Level::kInfo:
      return "";
    case Level::kWarn:
      return "warning: ";
    case Level::kError:
      return "error: ";
  }
  return "";
}

std::string timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  const int ms = static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

}  // namespace

void set_rank(int r) {
  state().rank = r;
}
int rank() {
  return state().rank;
}
void set_console_level(Level level) {
  state().console_level = level;
}

Status set_file(const std::string& dir) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const std::string path = str_cat(dir, "/rank", s.rank, ".log");
  if (s.file.is_open()) s.file.close();  // again: a run folder made anew
  s.file.clear();
  s.file.open(path, std::ios::app);
  PERIGEE_REQUIRE(s.file.good(), StatusCode::kIoError, "cannot open log file ", path);
  for (const auto& line : s.pending) s.file << line << '\n';
  s.pending.clear();
  s.file.flush();
  return Status::ok();
}

void close_file() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.file.is_open()) s.file.close();
}

void write(Level level, const std::string& message) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const std::string line = str_cat("[perigee r", s.rank, " ", timestamp(), "] ", level_tag(level), message);
  if (s.file.is_open()) {
    // Every line reaches the file at once: the lines before a rank is killed are the ones needed.
    s.file << line << '\n';
    s.file.flush();
  } else if (s.pending.size() < 10000) {
    s.pending.push_back(line);
  }
  const bool to_console = level >= s.console_level && (s.rank == 0 || level >= Level::kWarn);
  if (to_console) {
    std::FILE* f = level >= Level::kWarn ? stderr : stdout;
    std::fprintf(f, "%s\n", line.c_str());
    std::fflush(f);
  }
}

}  // namespace perigee::runtime::log
