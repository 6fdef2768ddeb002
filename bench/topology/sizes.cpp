// Size parsing and sweeps for perigee-bench (see sizes.hpp).
#include "bench/topology/sizes.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace perigee::bench::topology {

Status parse_bytes(const std::string& text, size_t* out) {
  PERIGEE_REQUIRE(!text.empty(), StatusCode::kInvalidArgument, "empty size");
  // strtoull would skip blanks and take a sign ("-8" wraps to 2^64 - 8): only digits may lead.
  PERIGEE_REQUIRE(std::isdigit(static_cast<unsigned char>(text[0])), StatusCode::kInvalidArgument,
                  "bad size '", text, "' (expected a non-negative number with an optional K, M or G suffix)");
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  const bool out_of_range = errno == ERANGE;
  std::string suffix(end);
  size_t mult = 1;
  if (suffix.empty() || suffix == "B" || suffix == "b") {
    mult = 1;
  } else {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    const std::string rest = suffix.substr(1);
    PERIGEE_REQUIRE(rest.empty() || rest == "B" || rest == "iB", StatusCode::kInvalidArgument, "bad size '",
                    text, "' (suffix must be K, M or G)");
    if (c == 'K')
      mult = size_t{1} << 10;
    else if (c == 'M')
      mult = size_t{1} << 20;
    else if (c == 'G')
      mult = size_t{1} << 30;
    else
      return make_error(StatusCode::kInvalidArgument, "bad size '", text, "' (suffix must be K, M or G)");
  }
  // Compared before multiplying, so that no product wraps around.
  PERIGEE_REQUIRE(!out_of_range && value <= kMaxBytes / mult, StatusCode::kInvalidArgument, "size '", text,
                  "' too large (at most 1024G = 2^40 bytes)");
  *out = static_cast<size_t>(value) * mult;
  return Status::ok();
}

Status make_sizes(size_t min_bytes, size_t max_bytes, double factor, size_t step, size_t elem_bytes,
                  std::vector<size_t>* out) {
  PERIGEE_REQUIRE(elem_bytes > 0, StatusCode::kInvalidArgument, "element size 0");
  PERIGEE_REQUIRE(min_bytes <= max_bytes, StatusCode::kInvalidArgument, "min bytes ", min_bytes,
                  " > max bytes ", max_bytes);
  PERIGEE_REQUIRE(step > 0 || factor > 1.0, StatusCode::kInvalidArgument,
                  "step factor must be > 1 (or give a step in bytes)");
  out->clear();
  double s = static_cast<double>(min_bytes);
  while (s <= static_cast<double>(max_bytes)) {
    const size_t bytes = static_cast<size_t>(s) / elem_bytes * elem_bytes;
    if (bytes > 0 && (out->empty() || out->back() != bytes)) out->push_back(bytes);
    if (step > 0)
      s += static_cast<double>(step);
    else
      s = (s < 1.0 ? 1.0 : s) * factor;
  }
  PERIGEE_REQUIRE(!out->empty(), StatusCode::kInvalidArgument, "no size from ", min_bytes, " to ", max_bytes,
                  " holds one element of ", elem_bytes, " bytes");
  return Status::ok();
}

}  // namespace perigee::bench::topology
