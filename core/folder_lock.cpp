#include "core/folder_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

namespace perigee {

FolderLock::FolderLock(FolderLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

FolderLock& FolderLock::operator=(FolderLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

FolderLock::~FolderLock() {
  release();
}

void FolderLock::release() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor drops the flock
  fd_ = -1;
}

Status FolderLock::verify(const std::string& folder, const std::string& what, bool* retaken) {
  *retaken = false;
  if (fd_ < 0) return Status::ok();
  const std::string path = folder + "/" + kFileName;
  struct stat held {
  }, there{};
  if (::fstat(fd_, &held) == 0 && held.st_nlink > 0 && ::stat(path.c_str(), &there) == 0 &&
      held.st_dev == there.st_dev && held.st_ino == there.st_ino) {
    return Status::ok();
  }
  release();
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  PERIGEE_REQUIRE(!ec, StatusCode::kIoError, what, " ", folder,
                  " was removed while this job ran, and cannot be ", "created again: ", ec.message());
  PERIGEE_CHECK(acquire(folder, what, this, 0.0));
  *retaken = true;
  return Status::ok();
}

Status FolderLock::acquire(const std::string& folder, const std::string& what, FolderLock* out,
                           double wait_s) {
  out->release();
  const std::string path = folder + "/" + kFileName;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  PERIGEE_REQUIRE(fd >= 0, StatusCode::kIoError, what, " ", folder, ": cannot create the lock file ", path,
                  ": ", std::strerror(errno));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  int locked = ::flock(fd, LOCK_EX | LOCK_NB);
  while (locked != 0 && errno == EWOULDBLOCK && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    locked = ::flock(fd, LOCK_EX | LOCK_NB);
  }
  if (locked != 0) {
    const int err = errno;
    char holder[256] = {};
    const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    PERIGEE_REQUIRE(err != EWOULDBLOCK, StatusCode::kUnavailable, what, " ", folder,
                    " is in use by another job (", who.empty() ? std::string("holder unknown") : who,
                    ", still after ", fixed(wait_s, 0),
                    " s): two jobs in one folder delete each other's files; stop the other job, or give this "
                    "one its own folder");
    return make_error(StatusCode::kIoError, what, " ", folder, ": cannot lock ", path, ": ",
                      std::strerror(err));
  }
  // Ours now: say who holds it, for the next job's message (best effort: the lock works without it).
  char host[128] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  const std::string note = str_cat("pid ", ::getpid(), " on host ", host, "\n");
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, note.data(), note.size(), 0);
  out->fd_ = fd;
  return Status::ok();
}

}  // namespace perigee
