// Status: the error value every Perigee runtime call returns, NCCL-style.
// A failing call returns a Status; each caller that passes it upward through PERIGEE_CHECK appends
// "at file:line", so the final message shows what failed and the path it took. Tests and tools may
// abort on a bad status (PERIGEE_CHECK_OR_DIE); library code never does.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace perigee {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad config value, bad shape, bad user input
  kNotFound,         // missing file, missing key
  kIoError,          // read/write/fsync failure, corrupt file
  kOutOfMemory,
  kUnavailable,  // no device, backend not present in this build
  kInternal,     // a bug or an unexpected library failure
  kCudaError,
  kCublasError,
  kNcclError,
  kMpiError,
  kBlasError,
  kHdf5Error,
  kFaultPersists,  // the fault ladder gave up: a fault came back through every rollback
};

const char* status_code_name(StatusCode code);

// Concatenates any streamable values into one string: str_cat("step ", 3, ": ", 1.5).
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// The items with `sep` between them: str_join({"a", "b"}, "; ") == "a; b".
inline std::string str_join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

// The first line of a message (a status's, without its "at file:line" trace), for one-line logs.
inline std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

// v with `digits` decimals, for messages and logs: fixed(1.2345, 2) == "1.23".
std::string fixed(double v, int digits);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "kInvalidArgument: <message>\n  at file:line ..." for logs and error exits.
  std::string to_string() const;

  // Appends one trace frame; used by PERIGEE_CHECK.
  Status& add_trace(const char* file, int line);

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
Status make_error(StatusCode code, Args&&... args) {
  return Status(code, str_cat(std::forward<Args>(args)...));
}

[[noreturn]] void die(const Status& status, const char* file, int line);

}  // namespace perigee

#define PERIGEE_CONCAT_INNER_(a, b) a##b
#define PERIGEE_CONCAT_(a, b) PERIGEE_CONCAT_INNER_(a, b)

// Propagates a non-ok Status to the caller, adding this frame to its trace.
#define PERIGEE_CHECK(expr)                                            \
  do {                                                                 \
    ::perigee::Status perigee_status_ = (expr);                        \
    if (!perigee_status_.is_ok()) {                                    \
      return std::move(perigee_status_.add_trace(__FILE__, __LINE__)); \
    }                                                                  \
  } while (0)

// Returns an error Status with a message built from the remaining arguments when cond is false.
#define PERIGEE_REQUIRE(cond, code, ...)                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      return std::move(::perigee::make_error(code, __VA_ARGS__).add_trace(__FILE__, __LINE__)); \
    }                                                                                           \
  } while (0)

// For tests, tools and main(): abort with the full trace on a bad status.
#define PERIGEE_CHECK_OR_DIE(expr)                                                     \
  do {                                                                                 \
    ::perigee::Status perigee_status_ = (expr);                                        \
    if (!perigee_status_.is_ok()) ::perigee::die(perigee_status_, __FILE__, __LINE__); \
  } while (0)
