#include "core/read_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace perigee {
namespace {

const char* kind_of(std::filesystem::file_type t) {
  switch (t) {
    case std::filesystem::file_type::directory:
      return "a folder";
    case std::filesystem::file_type::fifo:
      return "a FIFO";
    case std::filesystem::file_type::socket:
      return "a socket";
    case std::filesystem::file_type::block:
    case std::filesystem::file_type::character:
      return "a device";
    default:
      return "not a regular file";
  }
}

}  // namespace

Status read_small_file(const std::string& path, const char* what, std::string* bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // follows links; a loop is an error here
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return make_error(StatusCode::kIoError, what, " ", path, ": ", ec.message());
  }
  PERIGEE_REQUIRE(fs::exists(st), StatusCode::kNotFound, what, " ", path, " not found");
  PERIGEE_REQUIRE(fs::is_regular_file(st), StatusCode::kInvalidArgument, what, " ", path, " is ",
                  kind_of(st.type()), ", not a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  PERIGEE_REQUIRE(f != nullptr, StatusCode::kIoError, "cannot read ", what, " ", path, ": ",
                  std::strerror(errno));
  bytes->clear();
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) bytes->append(buffer, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  PERIGEE_REQUIRE(!failed, StatusCode::kIoError, "cannot read ", what, " ", path, ": ", std::strerror(err));
  return Status::ok();
}

}  // namespace perigee
