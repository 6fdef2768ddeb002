// CheckpointStore: a folder of checkpoint files with an atomic, durable commit and a verifying
// load that falls back to the newest good checkpoint.
//
// Commit of step s (every step is durable before the next one starts):
//   1. write ckpt-<s>.h5.tmp in the folder (checkpoint/hdf5_io.hpp), fsync it, close it;
//      optionally read it back and verify it (StoreOptions::verify_after_commit);
//   2. remove checkpoints with a step > s (an abandoned timeline, e.g. after a rollback), and
//      files set aside (set_aside) with a step <= s, fsync the folder;
//   3. rename ckpt-<s>.h5.tmp -> ckpt-<s>.h5, fsync the folder: this rename is the commit point;
//   4. write latest.tmp ("ckpt-<s>.h5\n"), fsync, rename to `latest`, fsync the folder;
//   5. retention: remove all but the newest keep_last checkpoints, fsync the folder.
// A cut at any point leaves the previous checkpoints intact; a leftover .tmp is ignored by loads
// and removed by open(). The newest complete ckpt-*.h5 is authoritative; `latest` is the pointer
// tools and people read, and load_latest reports when it is missing, stale or behind.
// Not thread-safe: one thread uses a store at a time (AsyncCheckpointWriter owns one). One
// process writes a folder. Details: docs/checkpoint.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/snapshot.hpp"
#include "core/folder_lock.hpp"
#include "core/status.hpp"

namespace perigee::checkpoint {

struct StoreOptions {
  int keep_last = 3;                 // retention: checkpoints kept after a commit (>= 1)
  bool verify_after_commit = false;  // read the .tmp back and verify it before the rename
  // Lock the folder for this store's life (core/folder_lock.hpp), before open() removes leftovers that
  // may be another job's writes in flight: a second job's open fails naming the holder. A job's store.
  bool exclusive = false;
  double lock_wait_s = FolderLock::kDefaultWaitS;  // for a holder that is exiting
  WriteOptions write;
};

struct CommitStats {
  std::string path;  // the committed file
  int64_t step = 0;
  uint64_t file_bytes = 0;
  WriteStats write;              // CRC and HDF5 split of write_seconds
  double write_seconds = 0.0;    // CRCs + HDF5 write of the .tmp
  double fsync_seconds = 0.0;    // fsync of the .tmp
  double verify_seconds = 0.0;   // read-back verification (0 when off)
  double publish_seconds = 0.0;  // renames, folder fsyncs, `latest`, retention
  double total_seconds = 0.0;
  std::vector<std::string> removed;  // files removed (superseded, set aside and caught up, retention)
};

// What the resuming run needs. Empty maps / 0 are not checked.
struct Expectation {
  std::map<std::string, int64_t> model_shape;    // must equal the stored shape (same keys)
  std::map<std::string, uint64_t> buffer_sizes;  // buffer name -> elements (same buffers)
  int32_t world_size = 0;                        // compared, never an error (see Compatibility)
};

// A resume on another world size is the caller's decision: it gets the stored world size here
// and the stored per-rank cursors in the snapshot's meta, and may re-shard or refuse.
struct Compatibility {
  int32_t stored_world_size = 0;
  bool world_size_changed = false;
};

// Checks a checkpoint header against `expected`. A model shape or buffer mismatch is
// kInvalidArgument naming the file, the key or buffer, and both values.
Status check_compatible(const std::string& path, const CheckpointHeader& header, const Expectation& expected,
                        Compatibility* out = nullptr);

struct SkippedCheckpoint {
  std::string path;
  int64_t step = 0;
  Status reason;
};

struct LoadReport {
  std::string path;  // the checkpoint loaded
  int64_t step = -1;
  Compatibility compatibility;
  std::vector<SkippedCheckpoint> skipped;  // newer checkpoints that failed, newest first
  std::vector<std::string> notes;          // `latest` problems, ignored leftovers
};

// Receives one line per note, per skipped checkpoint and for the one loaded.
using LoadLogFn = std::function<void(const std::string& line)>;

struct CheckpointEntry {
  int64_t step = 0;
  std::string path;
};

class CheckpointStore {
 public:
  static constexpr const char* kLatestName = "latest";

  CheckpointStore() = default;

  // Opens (creating it if needed) the folder `dir` and removes leftover .tmp files of cut writes.
  static Status open(const std::string& dir, const StoreOptions& options, CheckpointStore* out);
  // A store over `dir` for reading only, as it is: nothing is created or removed (perigee-ckpt verify).
  static CheckpointStore inspect(const std::string& dir);

  // Writes and commits `snapshot` as ckpt-<step>.h5 (protocol above).
  Status commit(const Snapshot& snapshot, CommitStats* stats = nullptr);

  // Loads the newest checkpoint that verifies and is compatible, newest step first, skipping (and
  // reporting) each bad one. kNotFound when the folder holds no checkpoint; otherwise the error of
  // the newest candidate, with every candidate's reason in the message.
  Status load_latest(const Expectation& expected, Snapshot* out, LoadReport* report = nullptr,
                     const LoadLogFn& log = {}) const;

  // Loads and verifies one file, then checks compatibility.
  Status load(const std::string& path, const Expectation& expected, Snapshot* out,
              Compatibility* compatibility = nullptr) const;

  // Renames a checkpoint file the run could not read (twice) to <name>.unreadable, out of list() and
  // out of the abandoned-timeline removal, so a newer checkpoint that failed to read for a transient
  // reason is not deleted by this run's next commit; *moved_to gets the new path. The file stays
  // until a commit reaches its step (the run has caught up) or someone renames it back to retry it.
  Status set_aside(const std::string& path, std::string* moved_to) const;
  static constexpr const char* kSetAsideSuffix = ".unreadable";
  // The step of a set-aside name (ckpt-<step>.h5.unreadable).
  static bool parse_set_aside_name(const std::string& name, int64_t* step);

  // Committed checkpoints (ckpt-<step>.h5, not verified), newest first.
  Status list(std::vector<CheckpointEntry>* out) const;
  // Whether a checkpoint can be written here: creates, writes and removes kProbeName (a leftover of a
  // cut probe is removed by the next open()). kIoError naming the folder and the reason (a read-only
  // file system, no permission, a full disk) instead of a first background write that fails.
  Status check_writable() const;
  // An exclusive store: FolderLock::verify on its folder (removed while the job ran: locked again, the
  // folder made anew, *retaken; taken by another job meanwhile: kUnavailable). Others: nothing to do.
  Status verify_lock(bool* retaken);
  // Whether the folder's file system has room for checkpoints of about `file_bytes` each: kIoError
  // when not even the next one fits (a full disk would fail every write at the same step, in every
  // relaunch); *warning (else empty) when the next fits but the peak of keep_last + 1 files (the new
  // one is written before the oldest is removed), less the files already there, would not.
  Status check_space(uint64_t file_bytes, std::string* warning) const;
  // Bytes available to this process on the folder's file system; false when statvfs fails.
  bool free_bytes(uint64_t* bytes) const;
  static constexpr const char* kProbeName = "write-probe.tmp";
  // The file name `latest` holds (kNotFound when there is none, kIoError when it is malformed).
  Status read_latest_pointer(std::string* name) const;
  // What is wrong with `latest` given the committed checkpoints `entries` (newest first, from list()):
  // "" when it names the newest, else a note (missing, malformed, stale, behind a newer file).
  std::string latest_pointer_note(const std::vector<CheckpointEntry>& entries) const;

  std::string path_for_step(int64_t step) const;
  const std::string& dir() const { return dir_; }
  const StoreOptions& options() const { return options_; }
  // Leftover files open() removed.
  const std::vector<std::string>& cleaned_at_open() const { return cleaned_; }

  // A leftover of a cut write that open() removes: ckpt-<step>.h5.tmp, latest.tmp, kProbeName.
  static bool is_leftover(const std::string& name);
  // "ckpt-00000120.h5" for 120; parse accepts any number of digits.
  static std::string file_name(int64_t step);
  static bool parse_file_name(const std::string& name, int64_t* step);

 private:
  std::string dir_;
  StoreOptions options_;
  std::vector<std::string> cleaned_;
  FolderLock lock_;  // held with options_.exclusive
};

// Durability helpers (POSIX): fsync a file or a folder; write a small file atomically and durably
// (name.tmp, fsync, rename, fsync the folder).
Status fsync_file(const std::string& path);
Status fsync_dir(const std::string& dir);
Status write_file_atomic(const std::string& dir, const std::string& name, const std::string& content);
// Creates `dir` and its missing ancestors, then fsyncs the parent of each folder it created, so
// that the new folders survive a power cut (a trailing '/' or '..' in dir changes nothing).
// *created (if given) lists them, outermost first, as absolute normalised paths.
Status create_dirs_durably(const std::string& dir, std::vector<std::string>* created = nullptr);

}  // namespace perigee::checkpoint
