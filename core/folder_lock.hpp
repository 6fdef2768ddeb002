// One job per folder: an exclusive flock(2) on <folder>/.perigee.lock, held while the FolderLock lives.
// Two jobs writing one checkpoint folder delete each other's checkpoints (each takes the other's newer
// files for an abandoned timeline) and remove each other's files in flight; two in one run folder mix
// their metrics. The kernel drops the lock when its process dies (kill -9, a power cut), so a relaunch is
// never locked out by a dead job. The file keeps the holder's pid and host for the message another job
// gets; it stays in the folder (removing a lock file races with the next job's open).
#pragma once

#include <string>

#include "core/status.hpp"

namespace perigee {

class FolderLock {
 public:
  static constexpr const char* kFileName = ".perigee.lock";

  FolderLock() = default;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  FolderLock(FolderLock&& other) noexcept;
  FolderLock& operator=(FolderLock&& other) noexcept;
  ~FolderLock();

  // Locks `folder` (which must exist) for this process, waiting up to wait_s seconds for a holder to let
  // go (a killed job's process still exiting when its relaunch starts). `what` names the folder in
  // messages ("checkpoint folder"). kUnavailable when another process holds it all that time (naming
  // its pid and host, as it wrote them), kIoError when the lock file cannot be created or locked.
  static constexpr double kDefaultWaitS = 5.0;
  static Status acquire(const std::string& folder, const std::string& what, FolderLock* out,
                        double wait_s = kDefaultWaitS);

  bool held() const { return fd_ >= 0; }
  void release();

  // While held: checks that the lock file in `folder` is still the one this lock holds. A folder removed
  // (or its lock file) while the job ran would let a second job in: the lock is then taken again on a
  // new lock file, the folder created again if need be (*retaken = true), or, when another job took the
  // folder meanwhile, kUnavailable naming it.
  Status verify(const std::string& folder, const std::string& what, bool* retaken);

 private:
  int fd_ = -1;
};

}  // namespace perigee
