// CheckpointStore: the commit protocol's visible results, retention, and the corruption campaign
// (truncated files, flipped data and metadata bytes, missing / stale / behind `latest`, .tmp
// leftovers, other model shapes and buffer sizes, another world size), each detected with a
// clear reason and a fallback to the newest good checkpoint.
#include "checkpoint/store.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/checkpoint/test_support.hpp"

namespace perigee::checkpoint {
namespace {

namespace fs = std::filesystem;
using test_support::make_snapshot;
using test_support::ScratchDir;

Expectation expectation_for(const Snapshot& s, int32_t world_size = 2) {
  Expectation e;
  e.model_shape = s.meta.model_shape;
  for (const Buffer& b : s.buffers) e.buffer_sizes[b.name] = b.data.size();
  e.world_size = world_size;
  return e;
}

std::vector<std::string> folder_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string latest_content(const std::string& dir) {
  return test_support::read_bytes((fs::path(dir) / "latest").string());
}

class Store : public ::testing::Test {
 protected:
  Store() : dir_("store") {}
  void SetUp() override { PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir_.path(), options_, &store_)); }
  // Commits steps 10, 20, 30 (snapshots kept for comparison).
  void commit_three() {
    for (int64_t step : {10, 20, 30}) {
      snaps_[step] = make_snapshot(step, static_cast<uint64_t>(step));
      PERIGEE_CHECK_OR_DIE(store_.commit(snaps_[step]));
    }
  }
  // Loads and expects step `want` (bit-exact) after skipping `skipped` newer ones.
  LoadReport expect_load(int64_t want, size_t skipped) {
    Snapshot out;
    LoadReport rep;
    std::vector<std::string> lines;
    const Status s = store_.load_latest(expectation_for(snaps_[want]), &out, &rep,
                                        [&](const std::string& l) { lines.push_back(l); });
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(rep.step, want);
    EXPECT_EQ(rep.skipped.size(), skipped);
    std::string why;
    EXPECT_TRUE(bit_equal(out, snaps_[want], &why)) << why;
    EXPECT_FALSE(lines.empty());
    EXPECT_NE(lines.back().find("loaded"), std::string::npos);
    return rep;
  }
  std::string reason0(const LoadReport& rep) {
    return rep.skipped.empty() ? std::string() : rep.skipped[0].reason.message();
  }

  ScratchDir dir_;
  StoreOptions options_;
  CheckpointStore store_;
  std::map<int64_t, Snapshot> snaps_;
};

// The folders a checkpoint store creates are made durable one by one: each new folder's parent is
// fsynced. A trailing '/' used to make the store fsync the new folder itself instead of its parent.
TEST(CreateDirsDurably, ListsEveryNewFolderWhateverTheSpelling) {
  ScratchDir dir("mkdir");
  const fs::path base = fs::absolute(dir.path()).lexically_normal();
  std::vector<std::string> created;
  ASSERT_TRUE(create_dirs_durably(dir.path() + "/a/b/c/", &created).is_ok());
  EXPECT_EQ(created, (std::vector<std::string>{(base / "a").string(), (base / "a/b").string(),
                                               (base / "a/b/c").string()}));
  EXPECT_TRUE(fs::is_directory(base / "a/b/c"));
  ASSERT_TRUE(create_dirs_durably(dir.path() + "/a/b/x/../d//", &created).is_ok());
  EXPECT_EQ(created, (std::vector<std::string>{(base / "a/b/d").string()}));
  ASSERT_TRUE(create_dirs_durably(dir.path() + "/a", &created).is_ok());
  EXPECT_TRUE(created.empty()) << "nothing new";
  test_support::write_bytes((base / "file").string(), "x");
  const Status s = create_dirs_durably((base / "file/sub").string(), &created);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("file/sub"), std::string::npos) << s.message();
}

TEST_F(Store, CommitWritesFileAndPointerAndNoTmp) {
  const Snapshot s = make_snapshot(7, 1);
  CommitStats st;
  PERIGEE_CHECK_OR_DIE(store_.commit(s, &st));
  EXPECT_EQ(folder_names(dir_.path()), (std::vector<std::string>{"ckpt-00000007.h5", "latest"}));
  EXPECT_EQ(latest_content(dir_.path()), "ckpt-00000007.h5\n");
  EXPECT_EQ(st.path, store_.path_for_step(7));
  EXPECT_GT(st.file_bytes, s.data_bytes());
  EXPECT_GT(st.total_seconds, 0.0);
  std::string name;
  PERIGEE_CHECK_OR_DIE(store_.read_latest_pointer(&name));
  EXPECT_EQ(name, "ckpt-00000007.h5");
  int64_t step = 0;
  EXPECT_TRUE(CheckpointStore::parse_file_name("ckpt-7.h5", &step));
  EXPECT_EQ(step, 7);
  EXPECT_FALSE(CheckpointStore::parse_file_name("ckpt-7.h5.tmp", &step));
  EXPECT_FALSE(CheckpointStore::parse_file_name("ckpt-x.h5", &step));
}

TEST_F(Store, RoundTripThroughLoadLatest) {
  commit_three();
  const LoadReport rep = expect_load(30, 0);
  EXPECT_TRUE(rep.notes.empty());
  EXPECT_FALSE(rep.compatibility.world_size_changed);
}

TEST_F(Store, RetentionKeepsTheLastK) {
  for (int64_t step = 1; step <= 6; ++step) {
    CommitStats st;
    PERIGEE_CHECK_OR_DIE(store_.commit(make_snapshot(step, 1), &st));
    EXPECT_EQ(st.removed.size(), step > 3 ? 1u : 0u);
  }
  EXPECT_EQ(folder_names(dir_.path()),
            (std::vector<std::string>{"ckpt-00000004.h5", "ckpt-00000005.h5", "ckpt-00000006.h5", "latest"}));
  CheckpointStore one;
  StoreOptions keep_one;
  keep_one.keep_last = 1;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir_.path(), keep_one, &one));
  PERIGEE_CHECK_OR_DIE(one.commit(make_snapshot(7, 1)));
  EXPECT_EQ(folder_names(dir_.path()), (std::vector<std::string>{"ckpt-00000007.h5", "latest"}));
  CheckpointStore none;
  keep_one.keep_last = 0;
  EXPECT_EQ(CheckpointStore::open(dir_.path(), keep_one, &none).code(), StatusCode::kInvalidArgument);
}

TEST_F(Store, CommitSupersedesNewerCheckpoints) {
  commit_three();
  CommitStats st;
  snaps_[25] = make_snapshot(25, 25);
  PERIGEE_CHECK_OR_DIE(store_.commit(snaps_[25], &st));  // a rollback to 20 went on to 25
  ASSERT_EQ(st.removed.size(), 1u);
  EXPECT_EQ(fs::path(st.removed[0]).filename(), "ckpt-00000030.h5");
  expect_load(25, 0);
}

TEST_F(Store, VerifyAfterCommit) {
  CheckpointStore verifying;
  StoreOptions o;
  o.verify_after_commit = true;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir_.path(), o, &verifying));
  CommitStats st;
  PERIGEE_CHECK_OR_DIE(verifying.commit(make_snapshot(3, 3), &st));
  EXPECT_GT(st.verify_seconds, 0.0);
}

TEST_F(Store, FailedCommitLeavesNoTraceAndKeepsLatest) {
  commit_three();
  Snapshot bad = make_snapshot(40, 1);
  bad.buffers[0].views.pop_back();  // views no longer cover the buffer
  const Status s = store_.commit(bad);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ckpt-00000040.h5.tmp"), std::string::npos) << s.message();
  EXPECT_EQ(latest_content(dir_.path()), "ckpt-00000030.h5\n");
  EXPECT_FALSE(fs::exists(store_.path_for_step(40) + ".tmp"));
  expect_load(30, 0);
}

TEST_F(Store, EmptyFolderIsNotFound) {
  Snapshot out;
  LoadReport rep;
  const Status s = store_.load_latest({}, &out, &rep);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("no checkpoint"), std::string::npos);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("no 'latest' pointer"), std::string::npos);
}

// ------------------------------------------------------------------ corruption campaign

TEST_F(Store, TruncatedNewestFallsBack) {
  commit_three();
  const std::string newest = store_.path_for_step(30);
  const std::string bytes = test_support::read_bytes(newest);
  test_support::write_bytes(newest, bytes.substr(0, bytes.size() / 2));
  const LoadReport rep = expect_load(20, 1);
  EXPECT_EQ(rep.skipped[0].path, newest);
  EXPECT_NE(reason0(rep).find("ckpt-00000030.h5"), std::string::npos) << reason0(rep);
  EXPECT_NE(reason0(rep).find("truncated"), std::string::npos) << reason0(rep);
}

// A read error is retried once before the file is skipped (and later removed as an abandoned timeline
// by the next commit): a file that reads on the second try is loaded. The test repairs the file when
// the store says it reads it again, as a transient fault would clear.
TEST_F(Store, AReadErrorIsRetriedOnceBeforeTheFileIsSkipped) {
  commit_three();
  const std::string good = test_support::read_bytes(store_.path_for_step(30));
  test_support::write_bytes(store_.path_for_step(30), good.substr(0, good.size() / 2));
  Snapshot out;
  LoadReport rep;
  int retries = 0;
  const Status s = store_.load_latest(expectation_for(snaps_[30]), &out, &rep, [&](const std::string& line) {
    if (line.find("reading '" + store_.path_for_step(30) + "' failed") != std::string::npos &&
        line.find("reading it again") != std::string::npos) {
      ++retries;
      test_support::write_bytes(store_.path_for_step(30), good);
    }
  });
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(rep.step, 30);
  EXPECT_TRUE(rep.skipped.empty());
  std::string why;
  EXPECT_TRUE(bit_equal(out, snaps_[30], &why)) << why;
}

// A newer file the run could not read is set aside (out of list() and of the abandoned-timeline
// removal) until a commit reaches its step; open() leaves it alone.
TEST_F(Store, ASetAsideFileStaysUntilACommitReachesItsStep) {
  commit_three();
  const std::string newest = store_.path_for_step(30);
  const std::string bytes = test_support::read_bytes(newest);
  test_support::write_bytes(newest, bytes.substr(0, bytes.size() / 2));
  const LoadReport rep = expect_load(20, 1);
  std::string moved;
  ASSERT_TRUE(store_.set_aside(rep.skipped[0].path, &moved).is_ok());
  EXPECT_EQ(moved, newest + CheckpointStore::kSetAsideSuffix);
  int64_t step = 0;
  EXPECT_TRUE(CheckpointStore::parse_set_aside_name(fs::path(moved).filename().string(), &step));
  EXPECT_EQ(step, 30);
  EXPECT_FALSE(CheckpointStore::parse_set_aside_name("ckpt-00000030.h5", &step));
  EXPECT_FALSE(CheckpointStore::is_leftover(fs::path(moved).filename().string()));
  expect_load(20, 0);  // no longer a candidate

  ASSERT_TRUE(CheckpointStore::open(dir_.path(), options_, &store_).is_ok());
  EXPECT_TRUE(store_.cleaned_at_open().empty());
  CommitStats st;
  ASSERT_TRUE(store_.commit(make_snapshot(25, 25), &st).is_ok());
  EXPECT_TRUE(fs::exists(moved));
  EXPECT_EQ(test_support::read_bytes(moved), bytes.substr(0, bytes.size() / 2));
  ASSERT_TRUE(store_.commit(make_snapshot(30, 31), &st).is_ok());
  EXPECT_FALSE(fs::exists(moved));
  EXPECT_NE(std::find(st.removed.begin(), st.removed.end(), moved), st.removed.end());

  EXPECT_EQ(store_.set_aside(dir_.path() + "/latest", &moved).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.set_aside(store_.path_for_step(99), &moved).code(), StatusCode::kIoError);
}

TEST_F(Store, FlippedDataByteFallsBack) {
  commit_three();
  const Buffer& v = snaps_[30].buffers[2];
  const size_t at = test_support::find_floats(store_.path_for_step(30), v.data.data() + v.views[4].offset, 8);
  ASSERT_NE(at, std::string::npos);
  test_support::flip_byte(store_.path_for_step(30), at + 9, 0x80);
  const LoadReport rep = expect_load(20, 1);
  EXPECT_NE(reason0(rep).find("/buffers/adam_v/" + v.views[4].name), std::string::npos) << reason0(rep);
  EXPECT_NE(reason0(rep).find("Fletcher32"), std::string::npos) << reason0(rep);
}

TEST_F(Store, FlippedMetadataBytesFallBack) {
  commit_three();
  // An attribute name in /meta and a buffer group's header: both checksummed by HDF5.
  test_support::flip_byte(store_.path_for_step(30),
                          test_support::find_in_file(store_.path_for_step(30), "min_lr_ratio") + 3);
  test_support::flip_byte(store_.path_for_step(20),
                          test_support::find_in_file(store_.path_for_step(20), "world_size") + 1);
  const LoadReport rep = expect_load(10, 2);
  EXPECT_NE(rep.skipped[0].reason.message().find("ckpt-00000030.h5"), std::string::npos);
  EXPECT_NE(rep.skipped[1].reason.message().find("ckpt-00000020.h5"), std::string::npos);
  for (const SkippedCheckpoint& k : rep.skipped)
    EXPECT_NE(k.reason.message().find("checksum"), std::string::npos) << k.reason.message();
}

TEST_F(Store, MissingLatestIsReportedAndTheFolderDecides) {
  commit_three();
  fs::remove(fs::path(dir_.path()) / "latest");
  const LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("no 'latest' pointer"), std::string::npos);
}

TEST_F(Store, StaleLatestIsReported) {
  commit_three();
  test_support::write_bytes(dir_.file("latest"), "ckpt-00000040.h5\n");
  LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("stale 'latest' pointer: 'ckpt-00000040.h5' is not a checkpoint file"),
            std::string::npos)
      << rep.notes[0];
  test_support::write_bytes(dir_.file("latest"), "../../etc/passwd\n");
  rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("does not name a checkpoint file"), std::string::npos) << rep.notes[0];
  test_support::write_bytes(dir_.file("latest"), std::string("ck\x01\xff\tpt") + std::string(100, 'x'));
  rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("(content 'ck\\x01\\xff\\x09pt" + std::string(57, 'x') + "...')"),
            std::string::npos)
      << "bytes a terminal or grep would choke on are escaped, the rest cut: " << rep.notes[0];
}

// A copy or rename by hand that puts an old state under a newer step's name is not taken for the newest
// checkpoint: the load checks the step inside against the name, skips it and takes the newest good one.
TEST_F(Store, AFileWhoseNameSaysAnotherStepIsSkipped) {
  commit_three();
  fs::copy_file(store_.path_for_step(10), store_.path_for_step(40));
  const LoadReport rep = expect_load(30, 1);
  EXPECT_EQ(rep.skipped[0].path, store_.path_for_step(40));
  EXPECT_NE(reason0(rep).find("ckpt-00000040.h5': the file name says step 40 but the file holds step 10"),
            std::string::npos)
      << reason0(rep);
}

// A folder where a commit renames a file (a checkpoint name, `latest`, or their .tmp) would fail that
// commit and every relaunch's at the same step: the write probe refuses it at setup, naming it, and the
// load notes it. A link in the way is fine: rename replaces a link.
TEST_F(Store, AFolderInTheWayOfCommitsIsRefusedBeforeTheFirstWrite) {
  commit_three();
  for (const std::string name : {"latest", "ckpt-00000040.h5", "ckpt-00000050.h5.tmp", "latest.tmp"}) {
    fs::remove(dir_.file(name));
    fs::create_directory(dir_.file(name));
    const Status s = store_.check_writable();
    EXPECT_EQ(s.code(), StatusCode::kIoError) << name;
    EXPECT_NE(s.message().find("'" + dir_.file(name) +
                               "' is a folder where a checkpoint file or the 'latest' "
                               "pointer is written; move it away"),
              std::string::npos)
        << s.message();
    fs::remove(dir_.file(name));
  }
  test_support::write_bytes(dir_.file("latest"), "ckpt-00000030.h5\n");
  fs::create_directory(dir_.file("ckpt-00000040.h5"));
  fs::create_symlink("/nonexistent", dir_.file("ckpt-00000050.h5"));
  fs::create_directory(dir_.file("notes"));  // not a name the store writes
  EXPECT_FALSE(store_.check_writable().is_ok());
  fs::remove(dir_.file("ckpt-00000040.h5"));
  EXPECT_TRUE(store_.check_writable().is_ok()) << "a dangling link or another folder does not block commits";
  fs::create_directory(dir_.file("ckpt-00000040.h5"));
  const LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 2u);
  std::string notes = rep.notes[0] + "\n" + rep.notes[1];
  EXPECT_NE(notes.find("ignoring '" + dir_.file("ckpt-00000040.h5") + "': a folder, not a checkpoint file"),
            std::string::npos)
      << notes;
  EXPECT_NE(notes.find("ignoring '" + dir_.file("ckpt-00000050.h5") + "': a link to nothing readable"),
            std::string::npos)
      << notes;
  // The commit over the link replaces it.
  fs::remove(dir_.file("ckpt-00000040.h5"));
  snaps_[50] = make_snapshot(50, 50);
  PERIGEE_CHECK_OR_DIE(store_.commit(snaps_[50]));
  expect_load(50, 0);
}

// An entry that cannot be stat'ed (a link loop), under any name, is skipped by every listing: opening
// the store, loading, committing (which lists to prune) and the write probe neither throw nor stop.
// A FIFO named 'latest' is refused as no pointer at once instead of blocking the load on a writer.
TEST_F(Store, LinkLoopsAndAFifoPointerAreSkipped) {
  commit_three();
  for (const std::string name : {"README", "ckpt-00000060.h5", "ckpt-00000070.h5.tmp"})
    fs::create_symlink(name, dir_.file(name));  // a link to itself: ELOOP
  CheckpointStore reopened;
  ASSERT_TRUE(CheckpointStore::open(dir_.path(), options_, &reopened).is_ok());
  EXPECT_TRUE(reopened.check_writable().is_ok());
  LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 2u);  // in the folder's order
  const std::string notes = rep.notes[0] + "\n" + rep.notes[1];
  EXPECT_NE(notes.find("ignoring '" + dir_.file("ckpt-00000060.h5") + "': a link to nothing readable"),
            std::string::npos)
      << notes;
  EXPECT_NE(notes.find("ignoring '" + dir_.file("ckpt-00000070.h5.tmp") + "' (left by an interrupted write)"),
            std::string::npos)
      << notes;

  fs::remove(dir_.file("latest"));
  ASSERT_EQ(::mkfifo(dir_.file("latest").c_str(), 0644), 0);
  rep = expect_load(30, 0);
  ASSERT_FALSE(rep.notes.empty());
  EXPECT_NE(rep.notes.back().find("ignoring the 'latest' pointer: '" + dir_.file("latest") +
                                  "': not a regular file"),
            std::string::npos)
      << rep.notes.back();
  fs::remove(dir_.file("latest"));
  snaps_[40] = make_snapshot(40, 40);
  PERIGEE_CHECK_OR_DIE(reopened.commit(snaps_[40]));
  expect_load(40, 0);
}

TEST_F(Store, LatestBehindTheNewestCompleteFile) {
  commit_three();
  test_support::write_bytes(dir_.file("latest"),
                            "ckpt-00000020.h5\n");  // cut between rename and pointer update
  const LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("is newer and complete"), std::string::npos) << rep.notes[0];
}

TEST_F(Store, TmpLeftoverIsIgnoredThenCleaned) {
  commit_three();
  const std::string tmp = store_.path_for_step(40) + ".tmp";
  const std::string bytes = test_support::read_bytes(store_.path_for_step(30));
  test_support::write_bytes(tmp, bytes.substr(0, bytes.size() / 3));  // a write cut mid-way
  test_support::write_bytes(dir_.file("latest.tmp"), "ckpt-000");
  LoadReport rep = expect_load(30, 0);
  ASSERT_EQ(rep.notes.size(), 2u);
  for (const std::string& n : rep.notes) EXPECT_NE(n.find("interrupted write"), std::string::npos) << n;
  CheckpointStore reopened;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir_.path(), options_, &reopened));
  EXPECT_EQ(reopened.cleaned_at_open().size(), 2u);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(dir_.file("latest.tmp")));
  // A commit of the same step as a leftover replaces it cleanly.
  test_support::write_bytes(tmp, "garbage");
  PERIGEE_CHECK_OR_DIE(reopened.commit(make_snapshot(40, 40)));
  EXPECT_FALSE(fs::exists(tmp));
}

// The writability probe leaves nothing behind; a probe that cannot be created is an error naming the
// folder (its name taken by a folder fails even for root); a probe left by a cut is removed by open().
TEST_F(Store, CheckWritableProbesAndLeavesNothing) {
  EXPECT_TRUE(store_.check_writable().is_ok());
  EXPECT_TRUE(folder_names(dir_.path()).empty());
  const fs::path probe = fs::path(dir_.path()) / CheckpointStore::kProbeName;
  fs::create_directory(probe);
  const Status s = store_.check_writable();
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("'" + dir_.path() + "' is not writable"), std::string::npos) << s.message();
  fs::remove(probe);
  std::ofstream(probe.string()) << "x";
  CheckpointStore reopened;
  ASSERT_TRUE(CheckpointStore::open(dir_.path(), options_, &reopened).is_ok());
  EXPECT_TRUE(folder_names(dir_.path()).empty());
}

TEST_F(Store, CheckSpaceRefusesACheckpointThatCannotFitAndWarnsBeforeKeepLastFills) {
  uint64_t free = 0;
  ASSERT_TRUE(store_.free_bytes(&free));
  std::string warning;
  const Status full = store_.check_space(free + (1 << 20), &warning);
  EXPECT_EQ(full.code(), StatusCode::kIoError);
  EXPECT_NE(full.message().find("free, and a checkpoint of this run takes about"), std::string::npos)
      << full.message();
  // keep_last 3: the peak is 4 files; a quarter of the free space each does not leave room for 4
  // (the free space moves a little under other writers, so not exactly a quarter).
  PERIGEE_CHECK_OR_DIE(store_.check_space(free / 3, &warning));
  EXPECT_NE(warning.find("keep_last = 3 needs room for 4 more"), std::string::npos) << warning;
  PERIGEE_CHECK_OR_DIE(store_.check_space(1 << 20, &warning));
  EXPECT_EQ(warning, "");
  commit_three();  // the peak adds one file to those there: a third of the free space now fits
  PERIGEE_CHECK_OR_DIE(store_.check_space(free / 3, &warning));
  EXPECT_EQ(warning, "");
}

// A full disk in the middle of a write (a 1 MiB tmpfs; needs root and mount, else skipped): the write
// fails, leaves no partial file, keeps the previous checkpoint, and says how much room is left.
TEST(StoreFullDisk, AFailedWriteSaysHowMuchRoomIsLeft) {
  ScratchDir scratch("full");
  const std::string mount_point = scratch.path();
  if (::getuid() != 0 ||
      std::system(("mount -t tmpfs -o size=1m tmpfs " + mount_point + " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here";
  CheckpointStore store;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(mount_point, StoreOptions{}, &store));
  PERIGEE_CHECK_OR_DIE(store.commit(make_snapshot(1, 1)));
  const Status s = store.commit(make_snapshot(2, 2, /*n_layer=*/2, /*n_embd=*/256));  // several MB
  const std::vector<std::string> names = folder_names(mount_point);
  (void)std::system(("umount " + mount_point).c_str());
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find(" MiB free in '" + mount_point + "' after removing the partial file"),
            std::string::npos)
      << s.message();
  // The file driver's report is cut to its cause, not its several hundred characters, once.
  EXPECT_NE(s.message().find("file write failed: No space left on device (errno 28)"), std::string::npos)
      << s.message();
  EXPECT_EQ(s.message().find("bytes actually written"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("No space left", s.message().find("No space left") + 1), std::string::npos)
      << s.message();
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-00000001.h5", "latest"}));
}

TEST_F(Store, OtherModelShapeIsSkipped) {
  commit_three();
  PERIGEE_CHECK_OR_DIE(store_.commit(make_snapshot(40, 40, /*n_layer=*/2, /*n_embd=*/8)));
  const LoadReport rep = expect_load(30, 1);
  EXPECT_EQ(rep.skipped[0].reason.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reason0(rep).find(
                "ckpt-00000040.h5': incompatible model shape: n_embd is 8 in the checkpoint, 16 expected"),
            std::string::npos)
      << reason0(rep);
}

TEST_F(Store, OtherBufferSizeIsSkipped) {
  commit_three();
  Expectation e = expectation_for(snaps_[30]);
  e.model_shape.clear();  // only the buffers are checked
  e.buffer_sizes["adam_v"] += 1;
  Snapshot out;
  LoadReport rep;
  const Status s = store_.load_latest(e, &out, &rep);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(rep.skipped.size(), 3u);
  EXPECT_NE(s.message().find("no usable checkpoint"), std::string::npos);
  EXPECT_NE(reason0(rep).find("buffer 'adam_v' holds"), std::string::npos) << reason0(rep);
  e = expectation_for(snaps_[30]);
  e.buffer_sizes.erase("adam_m");
  EXPECT_NE(store_.load_latest(e, &out).message().find("has buffer 'adam_m' that this run does not expect"),
            std::string::npos);
}

TEST_F(Store, AllBadListsEveryReason) {
  commit_three();
  for (int64_t step : {10, 20, 30}) {
    const std::string p = store_.path_for_step(step);
    test_support::write_bytes(p, test_support::read_bytes(p).substr(0, 100));
  }
  Snapshot out;
  LoadReport rep;
  const Status s = store_.load_latest(expectation_for(snaps_[30]), &out, &rep);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(rep.skipped.size(), 3u);
  for (int64_t step : {10, 20, 30})
    EXPECT_NE(s.message().find(CheckpointStore::file_name(step)), std::string::npos) << s.message();
}

TEST_F(Store, OtherWorldSizeIsTheCallersDecision) {
  snaps_[10] = make_snapshot(10, 10, 2, 16, /*world_size=*/2);
  PERIGEE_CHECK_OR_DIE(store_.commit(snaps_[10]));
  Snapshot out;
  LoadReport rep;
  std::vector<std::string> lines;
  PERIGEE_CHECK_OR_DIE(store_.load_latest(expectation_for(snaps_[10], /*world_size=*/4), &out, &rep,
                                          [&](const std::string& l) { lines.push_back(l); }));
  EXPECT_TRUE(rep.compatibility.world_size_changed);
  EXPECT_EQ(rep.compatibility.stored_world_size, 2);
  ASSERT_EQ(out.meta.data_cursors.size(), 2u);  // the stored cursors, to re-shard or refuse
  EXPECT_EQ(out.meta.data_cursors[1][0], 10u * 16 + 1);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("written by 2 ranks, this run has 4"), std::string::npos) << lines.back();
}

}  // namespace
}  // namespace perigee::checkpoint
