// Token file writer/reader: the binary layout documented in token_file.hpp, written atomically
// (temp file, fsync, rename, fsync of the folder) and fully verified on read.
#include "runtime/token_file.hpp"

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace perigee::runtime {
namespace {

constexpr uint32_t kBytesPerToken = 2;
constexpr uint32_t kMaxVocab = 65536;  // tokens are stored as uint16

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// Writes all of [data, data + size) to fd, retrying short writes and EINTR.
bool write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool read_all(int fd, uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;  // the file shrank while we read it
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// "data file X not found; build it with: ..." naming the perigee-data prefix when the path is one
// of the <prefix>_train.bin / <prefix>_val.bin pair the tool writes.
Status not_found_error(const std::string& path) {
  std::string_view p = path;
  for (std::string_view suffix : {std::string_view("_train.bin"), std::string_view("_val.bin")}) {
    if (p.size() > suffix.size() && p.substr(p.size() - suffix.size()) == suffix) {
      std::string prefix(p.substr(0, p.size() - suffix.size()));
      return make_error(StatusCode::kNotFound, "data file ", path,
                        " not found; build it with: scripts/build_data.sh (or perigee-data --fortunes --out ",
                        prefix, ")");
    }
  }
  return make_error(StatusCode::kNotFound, "data file ", path,
                    " not found; build it with: scripts/build_data.sh (or perigee-data --fortunes --out "
                    "data/fortunes, which writes data/fortunes_train.bin and data/fortunes_val.bin)");
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  // Closes now and reports the result (close can report a deferred write error).
  bool close_now() {
    int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0;
  }
  // Hands the descriptor to the caller, who then closes it.
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  for (size_t i = 0; i < size; ++i) c = kCrcTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

Status stage_token_file(const std::string& path, const std::vector<int32_t>& tokens, uint32_t vocab_size) {
  PERIGEE_REQUIRE(!path.empty(), StatusCode::kInvalidArgument, "token file path is empty");
  PERIGEE_REQUIRE(vocab_size > 0 && vocab_size <= kMaxVocab, StatusCode::kInvalidArgument, "token file ",
                  path, ": vocab_size ", vocab_size, " is outside [1, ", kMaxVocab, "] (tokens are uint16)");

  std::vector<uint8_t> buffer(kTokenFileHeaderBytes + kBytesPerToken * tokens.size(), 0);
  uint8_t* body = buffer.data() + kTokenFileHeaderBytes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t t = tokens[i];
    PERIGEE_REQUIRE(t >= 0 && static_cast<uint32_t>(t) < vocab_size, StatusCode::kInvalidArgument,
                    "token file ", path, ": token ", t, " at index ", i, " is outside [0, ", vocab_size, ")");
    body[2 * i] = static_cast<uint8_t>(t & 0xFF);
    body[2 * i + 1] = static_cast<uint8_t>((t >> 8) & 0xFF);
  }
  uint8_t* h = buffer.data();
  std::memcpy(h, kTokenFileMagic, sizeof(kTokenFileMagic));
  put_u32(h + 8, kTokenFileVersion);
  put_u32(h + 12, vocab_size);
  put_u64(h + 16, tokens.size());
  put_u32(h + 24, kBytesPerToken);
  put_u32(h + 28, crc32(body, buffer.size() - kTokenFileHeaderBytes));

  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PERIGEE_REQUIRE(fd >= 0, StatusCode::kIoError, "token file ", path, ": cannot create ", tmp, ": ",
                  errno_text(errno));
  FdCloser closer(fd);
  bool ok = write_all(fd, buffer.data(), buffer.size());
  int err = errno;
  if (ok) {
    ok = ::fsync(fd) == 0;
    err = errno;
  }
  if (ok) {
    ok = closer.close_now();
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return make_error(StatusCode::kIoError, "token file ", path, ": writing ", tmp,
                      " failed: ", errno_text(err));
  }
  return Status::ok();
}

Status commit_token_file(const std::string& path) {
  const std::string tmp = path + ".tmp";
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return make_error(StatusCode::kIoError, "token file ", path, ": cannot rename ", tmp,
                      " to it: ", errno_text(err));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  PERIGEE_REQUIRE(dir_fd >= 0, StatusCode::kIoError, "token file ", path, ": cannot open folder ", dir,
                  " to fsync it: ", errno_text(errno));
  FdCloser dir_closer(dir_fd);
  PERIGEE_REQUIRE(::fsync(dir_fd) == 0, StatusCode::kIoError, "token file ", path, ": fsync of folder ", dir,
                  " failed: ", errno_text(errno));
  return Status::ok();
}

void discard_staged_token_file(const std::string& path) {
  ::unlink((path + ".tmp").c_str());
}

Status write_token_file(const std::string& path, const std::vector<int32_t>& tokens, uint32_t vocab_size) {
  PERIGEE_CHECK(stage_token_file(path, tokens, vocab_size));
  return commit_token_file(path);
}

namespace {

// Opens `path` and reads and checks its header (magic, version, bytes per token, vocabulary, the file
// size against the count). On success *fd_out is open at the first token (the caller closes it).
Status open_token_file(const std::string& path, int* fd_out, TokenFileHeader* header) {
  // O_NONBLOCK: a FIFO opens at once (and is refused below as no regular file) instead of waiting for a
  // writer; regular files ignore it.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return not_found_error(path);
    return make_error(StatusCode::kIoError, "token file ", path, ": cannot open: ", errno_text(err));
  }
  FdCloser closer(fd);
  struct stat st {};
  PERIGEE_REQUIRE(::fstat(fd, &st) == 0, StatusCode::kIoError, "token file ", path,
                  ": cannot stat: ", errno_text(errno));
  PERIGEE_REQUIRE(S_ISREG(st.st_mode), StatusCode::kIoError, "token file ", path, ": not a regular file");
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  PERIGEE_REQUIRE(file_bytes >= kTokenFileHeaderBytes, StatusCode::kIoError, "token file ", path,
                  ": truncated: ", file_bytes, " bytes, shorter than the ", kTokenFileHeaderBytes,
                  "-byte header");

  uint8_t h[kTokenFileHeaderBytes];
  PERIGEE_REQUIRE(read_all(fd, h, sizeof(h)), StatusCode::kIoError, "token file ", path,
                  ": reading the header failed: ", errno_text(errno));
  PERIGEE_REQUIRE(std::memcmp(h, kTokenFileMagic, sizeof(kTokenFileMagic)) == 0, StatusCode::kIoError,
                  "token file ", path, ": bad magic (expected \"PRGTOK01\"; not a perigee token file)");
  const uint32_t version = get_u32(h + 8);
  const uint32_t vocab_size = get_u32(h + 12);
  const uint64_t count = get_u64(h + 16);
  const uint32_t bytes_per_token = get_u32(h + 24);
  PERIGEE_REQUIRE(version == kTokenFileVersion, StatusCode::kIoError, "token file ", path,
                  ": unsupported version ", version, " (this build reads version ", kTokenFileVersion,
                  "); rebuild it with perigee-data");
  PERIGEE_REQUIRE(bytes_per_token == kBytesPerToken, StatusCode::kIoError, "token file ", path,
                  ": bytes_per_token is ", bytes_per_token, ", expected ", kBytesPerToken);
  PERIGEE_REQUIRE(vocab_size > 0 && vocab_size <= kMaxVocab, StatusCode::kIoError, "token file ", path,
                  ": vocab_size ", vocab_size, " is outside [1, ", kMaxVocab, "]");
  const uint64_t body_bytes = file_bytes - kTokenFileHeaderBytes;
  PERIGEE_REQUIRE(body_bytes % kBytesPerToken == 0 && body_bytes / kBytesPerToken == count,
                  StatusCode::kIoError, "token file ", path, ": size mismatch: the header says ", count,
                  " tokens but the file has ", body_bytes, " bytes after the header (expected ", count, " x ",
                  kBytesPerToken, "); the file is truncated or has trailing data");
  header->version = version;
  header->vocab_size = vocab_size;
  header->count = count;
  header->token_crc32 = get_u32(h + 28);
  *fd_out = closer.release();
  return Status::ok();
}

}  // namespace

Status read_token_header(const std::string& path, TokenFileHeader* header) {
  int fd = -1;
  PERIGEE_CHECK(open_token_file(path, &fd, header));
  FdCloser closer(fd);
  return Status::ok();
}

Status read_token_file(const std::string& path, std::vector<uint16_t>* tokens, TokenFileHeader* header) {
  PERIGEE_REQUIRE(tokens != nullptr, StatusCode::kInvalidArgument, "read_token_file(", path,
                  "): tokens is null");
  TokenFileHeader h;
  int fd = -1;
  PERIGEE_CHECK(open_token_file(path, &fd, &h));
  FdCloser closer(fd);
  const uint64_t count = h.count;
  const uint32_t vocab_size = h.vocab_size;
  const uint32_t stored_crc = h.token_crc32;

  // The little-endian body read straight into the tokens (swapped on a big-endian host after the CRC).
  std::vector<uint16_t> out(count);
  PERIGEE_REQUIRE(read_all(fd, reinterpret_cast<uint8_t*>(out.data()), count * kBytesPerToken),
                  StatusCode::kIoError, "token file ", path, ": reading ", count,
                  " tokens failed: ", errno_text(errno));
  const uint32_t crc = crc32(out.data(), count * kBytesPerToken);
  if (crc != stored_crc) {
    return make_error(StatusCode::kIoError, "token file ", path, ": CRC mismatch (header 0x", std::hex,
                      stored_crc, ", data 0x", crc, std::dec, "); the token data is corrupt");
  }
  if constexpr (std::endian::native == std::endian::big) {
    for (uint16_t& t : out) t = static_cast<uint16_t>((t >> 8) | (t << 8));
  }
  for (uint64_t i = 0; i < count; ++i) {
    PERIGEE_REQUIRE(out[i] < vocab_size, StatusCode::kIoError, "token file ", path, ": token ", out[i],
                    " at index ", i, " is >= vocab_size ", vocab_size);
  }
  *tokens = std::move(out);
  if (header != nullptr) *header = h;
  return Status::ok();
}

Status read_token_file(const std::string& path, std::vector<int32_t>* tokens, TokenFileHeader* header) {
  PERIGEE_REQUIRE(tokens != nullptr, StatusCode::kInvalidArgument, "read_token_file(", path,
                  "): tokens is null");
  std::vector<uint16_t> stored;
  PERIGEE_CHECK(read_token_file(path, &stored, header));
  tokens->assign(stored.begin(), stored.end());
  return Status::ok();
}

}  // namespace perigee::runtime
