// FolderLock and the exclusive CheckpointStore: one job per folder. A second holder is refused with the
// first one's pid and host; a holder that lets go within the wait is waited for; a holder killed with
// SIGKILL (a real process: bash taking the same flock(2) lock with util-linux's flock(1), then exec'ing
// sleep with the descriptor open) frees the folder at once, so a relaunch after a power cut or a kill -9
// is never locked out.
#include "core/folder_lock.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "checkpoint/store.hpp"
#include "tests/checkpoint/test_support.hpp"

namespace perigee::checkpoint {
namespace {

using test_support::ScratchDir;

TEST(FolderLock, ASecondHolderIsRefusedNamingTheFirst) {
  ScratchDir dir("lock");
  FolderLock first, second;
  PERIGEE_CHECK_OR_DIE(FolderLock::acquire(dir.path(), "run folder", &first, 0.0));
  EXPECT_TRUE(first.held());
  const Status s = FolderLock::acquire(dir.path(), "run folder", &second, 0.1);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  const std::string want = "run folder " + dir.path() + " is in use by another job (pid " +
                           std::to_string(::getpid()) + " on host ";
  EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  EXPECT_FALSE(second.held());
  first.release();
  PERIGEE_CHECK_OR_DIE(FolderLock::acquire(dir.path(), "run folder", &second, 0.0));
  EXPECT_TRUE(second.held());
  // A moved lock is still held, by its new owner only.
  FolderLock moved = std::move(second);
  EXPECT_TRUE(moved.held());
  EXPECT_FALSE(second.held());
  EXPECT_EQ(FolderLock::acquire(dir.path(), "run folder", &first, 0.0).code(), StatusCode::kUnavailable);
}

TEST(FolderLock, AHolderThatLetsGoWithinTheWaitIsWaitedFor) {
  ScratchDir dir("lock");
  FolderLock first, second;
  PERIGEE_CHECK_OR_DIE(FolderLock::acquire(dir.path(), "checkpoint folder", &first, 0.0));
  std::thread exiting([&first] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first.release();
  });
  const Status s = FolderLock::acquire(dir.path(), "checkpoint folder", &second, 30.0);
  exiting.join();
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_TRUE(second.held());
}

TEST(FolderLock, AKilledHolderFreesTheFolderAtOnce) {
  ScratchDir dir("lock");
  const std::string file = dir.path() + "/" + FolderLock::kFileName;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execlp("bash", "bash", "-c", "exec 9>>\"$1\" && flock --exclusive 9 && exec sleep 60", "holder",
             file.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Until flock(1) holds it, our own tries succeed: wait for the first refusal.
  FolderLock mine;
  Status s;
  for (int i = 0; i < 200; ++i) {
    s = FolderLock::acquire(dir.path(), "checkpoint folder", &mine, 0.0);
    if (!s.is_ok()) break;
    mine.release();
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  if (s.is_ok()) ::kill(child, SIGKILL);
  ASSERT_EQ(s.code(), StatusCode::kUnavailable) << "the holder never took the lock: " << s.to_string();
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  s = FolderLock::acquire(dir.path(), "checkpoint folder", &mine, 0.0);  // no wait needed
  EXPECT_TRUE(s.is_ok()) << s.to_string();
}

// A folder removed under a running job (rm -rf of its run or checkpoint folder) would let a second job in
// on a new lock file: verify() finds the lock file gone, makes the folder anew and locks it again; where
// another job got there first, it says so.
TEST(FolderLock, VerifyTakesARemovedFolderBackOrNamesTheJobThatTookIt) {
  ScratchDir dir("lock");
  const std::string folder = dir.path() + "/run";
  std::filesystem::create_directories(folder);
  FolderLock mine, other;
  PERIGEE_CHECK_OR_DIE(FolderLock::acquire(folder, "run folder", &mine, 0.0));
  bool retaken = true;
  PERIGEE_CHECK_OR_DIE(mine.verify(folder, "run folder", &retaken));
  EXPECT_FALSE(retaken) << "nothing happened to the folder";
  std::filesystem::remove_all(folder);
  PERIGEE_CHECK_OR_DIE(mine.verify(folder, "run folder", &retaken));
  EXPECT_TRUE(retaken);
  EXPECT_TRUE(std::filesystem::exists(folder + "/" + FolderLock::kFileName));
  EXPECT_EQ(FolderLock::acquire(folder, "run folder", &other, 0.0).code(), StatusCode::kUnavailable)
      << "the lock was taken again: a second job is refused";
  // The lock file alone removed, and another job locks a new one before we look.
  std::filesystem::remove(folder + "/" + FolderLock::kFileName);
  PERIGEE_CHECK_OR_DIE(FolderLock::acquire(folder, "run folder", &other, 0.0));
  const Status s = mine.verify(folder, "run folder", &retaken);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(s.message().find("is in use by another job (pid " + std::to_string(::getpid())),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(mine.held());
}

TEST(FolderLock, AnExclusiveStoreRefusesASecondOne) {
  ScratchDir dir("lock");
  StoreOptions options;
  options.exclusive = true;
  options.lock_wait_s = 0.1;
  CheckpointStore first, second, reader;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir.path(), options, &first));
  const Status s = CheckpointStore::open(dir.path(), options, &second);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(s.message().find("checkpoint folder " + dir.path() + " is in use by another job"),
            std::string::npos)
      << s.message();
  // A store that only reads (perigee-ckpt's) takes no lock.
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir.path(), StoreOptions{}, &reader));
  first = CheckpointStore();  // closes: the folder is free
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir.path(), options, &second));
}

}  // namespace
}  // namespace perigee::checkpoint
