// Rank-prefixed logging: "[perigee r0 12:00:01.234] message". Rank 0 writes INFO and above to the
// console; every rank (0 included) also appends everything to <run_dir>/rank<r>.log once a run
// directory is set. Warnings and errors from any rank reach stderr.
#pragma once

#include <string>

#include "core/status.hpp"

namespace perigee::runtime::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void set_rank(int rank);
int rank();
void set_console_level(Level level);
// Opens <dir>/rank<r>.log for appending; lines logged before are not lost (buffered until then).
Status set_file(const std::string& dir);
void close_file();

void write(Level level, const std::string& message);

template <typename... Args>
void debug(Args&&... args) {
  write(Level::kDebug, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void info(Args&&... args) {
  write(Level::kInfo, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void warn(Args&&... args) {
  write(Level::kWarn, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void error(Args&&... args) {
  write(Level::kError, str_cat(std::forward<Args>(args)...));
}

}  // namespace perigee::runtime::log
