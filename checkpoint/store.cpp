// CheckpointStore: atomic durable commit, retention, verifying load with fallback.
#include "checkpoint/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace perigee::checkpoint {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string errno_text() {
  return std::strerror(errno);
}

constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".h5";
constexpr const char* kTmpSuffix = ".tmp";

// "x.tmp" -> "x"; "" for a name without the suffix.
std::string tmp_stem(const std::string& name) {
  const size_t n = name.size(), t = std::strlen(kTmpSuffix);
  return n > t && name.compare(n - t, t, kTmpSuffix) == 0 ? name.substr(0, n - t) : std::string();
}

// A name a commit renames a finished file onto: ckpt-<step>.h5 or `latest`.
bool is_commit_name(const std::string& name) {
  int64_t step = 0;
  return name == CheckpointStore::kLatestName || CheckpointStore::parse_file_name(name, &step);
}

}  // namespace

bool CheckpointStore::is_leftover(const std::string& name) {
  return name == CheckpointStore::kProbeName || is_commit_name(tmp_stem(name));
}

namespace {

// A name the store writes to (ckpt-<step>.h5, `latest`, or their .tmp) that is not a file it can
// rename over: a folder. rename(2) replaces a file or a link, never a folder.
bool blocks_writes(const fs::directory_entry& entry, const std::string& name) {
  std::error_code ec;
  if (!entry.is_directory(ec) || entry.is_symlink(ec)) return false;
  return is_commit_name(name) || is_commit_name(tmp_stem(name));
}

// `s` for a message: at most `max` bytes, control and non-ASCII bytes as \xNN.
std::string printable(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

Status remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return make_error(StatusCode::kIoError, "removing '", path, "': ", errno_text());
  return Status::ok();
}

}  // namespace

Status fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(StatusCode::kIoError, "opening '", path, "' for fsync: ", errno_text());
  const int rc = ::fsync(fd);
  const std::string err = rc != 0 ? errno_text() : "";
  ::close(fd);
  PERIGEE_REQUIRE(rc == 0, StatusCode::kIoError, "fsync of '", path, "' failed: ", err);
  return Status::ok();
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(StatusCode::kIoError, "opening folder '", dir, "' for fsync: ", errno_text());
  const int rc = ::fsync(fd);
  const std::string err = rc != 0 ? errno_text() : "";
  ::close(fd);
  PERIGEE_REQUIRE(rc == 0, StatusCode::kIoError, "fsync of folder '", dir, "' failed: ", err);
  return Status::ok();
}

Status create_dirs_durably(const std::string& dir, std::vector<std::string>* created) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec).lexically_normal();
  if (ec) return make_error(StatusCode::kIoError, "folder '", dir, "': ", ec.message());
  if (p.has_relative_path() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  std::vector<fs::path> missing;                                           // innermost first
  for (fs::path q = p; !q.empty() && !fs::exists(q, ec); q = q.parent_path()) {
    missing.push_back(q);
    if (q == q.root_path()) break;
  }
  fs::create_directories(p, ec);
  if (ec) return make_error(StatusCode::kIoError, "creating folder '", dir, "': ", ec.message());
  if (created != nullptr) created->clear();
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    PERIGEE_CHECK(fsync_dir(it->parent_path().string()));
    if (created != nullptr) created->push_back(it->string());
  }
  return Status::ok();
}

Status write_file_atomic(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string final_path = (fs::path(dir) / name).string();
  const std::string tmp = final_path + kTmpSuffix;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(StatusCode::kIoError, "creating '", tmp, "': ", errno_text());
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string err = errno_text();
      ::close(fd);
      (void)remove_file(tmp);
      return make_error(StatusCode::kIoError, "writing '", tmp, "': ", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string err = errno_text();
    ::close(fd);
    return make_error(StatusCode::kIoError, "fsync of '", tmp, "' failed: ", err);
  }
  if (::close(fd) != 0) return make_error(StatusCode::kIoError, "closing '", tmp, "': ", errno_text());
  if (::rename(tmp.c_str(), final_path.c_str()) != 0)
    return make_error(StatusCode::kIoError, "renaming '", tmp, "' to '", final_path, "': ", errno_text());
  PERIGEE_CHECK(fsync_dir(dir));
  return Status::ok();
}

// ------------------------------------------------------------------ compatibility

Status check_compatible(const std::string& path, const CheckpointHeader& header, const Expectation& expected,
                        Compatibility* out) {
  const auto& stored = header.meta.model_shape;
  if (!expected.model_shape.empty()) {
    for (const auto& [key, value] : expected.model_shape) {
      const auto it = stored.find(key);
      PERIGEE_REQUIRE(it != stored.end(), StatusCode::kInvalidArgument, "checkpoint '", path,
                      "': incompatible model shape: key '", key, "' is missing (expected ", value, ")");
      PERIGEE_REQUIRE(it->second == value, StatusCode::kInvalidArgument, "checkpoint '", path,
                      "': incompatible model shape: ", key, " is ", it->second, " in the checkpoint, ", value,
                      " expected");
    }
    for (const auto& [key, value] : stored)
      PERIGEE_REQUIRE(expected.model_shape.count(key), StatusCode::kInvalidArgument, "checkpoint '", path,
                      "': incompatible model shape: the checkpoint has key '", key, "' (= ", value,
                      ") that this model does not");
  }
  if (!expected.buffer_sizes.empty()) {
    for (const auto& [name, size] : expected.buffer_sizes) {
      const BufferInfo* b = header.find_buffer(name);
      PERIGEE_REQUIRE(b, StatusCode::kInvalidArgument, "checkpoint '", path, "': buffer '", name,
                      "' is missing (expected ", size, " elements)");
      PERIGEE_REQUIRE(b->size == size, StatusCode::kInvalidArgument, "checkpoint '", path, "': buffer '",
                      name, "' holds ", b->size, " elements in the checkpoint, ", size, " expected");
    }
    for (const BufferInfo& b : header.buffers)
      PERIGEE_REQUIRE(expected.buffer_sizes.count(b.name), StatusCode::kInvalidArgument, "checkpoint '", path,
                      "': the checkpoint has buffer '", b.name, "' that this run does not expect");
  }
  if (out) {
    out->stored_world_size = header.meta.world_size;
    out->world_size_changed = expected.world_size > 0 && expected.world_size != header.meta.world_size;
  }
  return Status::ok();
}

// ------------------------------------------------------------------ store

std::string CheckpointStore::file_name(int64_t step) {
  std::string digits = std::to_string(step);
  if (digits.size() < 8) digits.insert(0, 8 - digits.size(), '0');
  return kPrefix + digits + kSuffix;
}

bool CheckpointStore::parse_file_name(const std::string& name, int64_t* step) {
  const size_t p = std::strlen(kPrefix), s = std::strlen(kSuffix);
  if (name.size() <= p + s || name.compare(0, p, kPrefix) != 0 ||
      name.compare(name.size() - s, s, kSuffix) != 0)
    return false;
  const std::string digits = name.substr(p, name.size() - p - s);
  if (digits.empty() || digits.size() > 18) return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *step = v;
  return true;
}

bool CheckpointStore::parse_set_aside_name(const std::string& name, int64_t* step) {
  const size_t n = name.size(), t = std::strlen(kSetAsideSuffix);
  return n > t && name.compare(n - t, t, kSetAsideSuffix) == 0 &&
         parse_file_name(name.substr(0, n - t), step);
}

Status CheckpointStore::set_aside(const std::string& path, std::string* moved_to) const {
  int64_t step = 0;
  PERIGEE_REQUIRE(parse_file_name(fs::path(path).filename().string(), &step), StatusCode::kInvalidArgument,
                  "cannot set aside '", path, "': not a checkpoint file name");
  const std::string to = path + kSetAsideSuffix;
  if (::rename(path.c_str(), to.c_str()) != 0)
    return make_error(StatusCode::kIoError, "setting aside '", path, "' as '", to, "': ", errno_text());
  PERIGEE_CHECK(fsync_dir(dir_));
  if (moved_to) *moved_to = to;
  return Status::ok();
}

std::string CheckpointStore::path_for_step(int64_t step) const {
  return (fs::path(dir_) / file_name(step)).string();
}

Status CheckpointStore::open(const std::string& dir, const StoreOptions& options, CheckpointStore* out) {
  PERIGEE_REQUIRE(!dir.empty(), StatusCode::kInvalidArgument, "checkpoint folder is empty");
  PERIGEE_REQUIRE(options.keep_last >= 1, StatusCode::kInvalidArgument,
                  "checkpoint keep_last must be >= 1 (got ", options.keep_last, ")");
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  if (!existed) {
    if (Status s = create_dirs_durably(dir); !s)
      return make_error(s.code(), "checkpoint folder: ", s.message());
  }
  PERIGEE_REQUIRE(fs::is_directory(dir, ec), StatusCode::kIoError, "checkpoint folder '", dir,
                  "' is not a folder");
  CheckpointStore store;
  store.dir_ = dir;
  store.options_ = options;
  if (options.exclusive)
    PERIGEE_CHECK(FolderLock::acquire(dir, "checkpoint folder", &store.lock_, options.lock_wait_s));
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code stat_ec;  // an entry that cannot be stat'ed (a link loop) is not ours to remove
    if (is_leftover(name) && entry.is_regular_file(stat_ec)) {
      PERIGEE_CHECK(remove_file(entry.path().string()));
      store.cleaned_.push_back(entry.path().string());
    }
  }
  if (ec) return make_error(StatusCode::kIoError, "listing checkpoint folder '", dir, "': ", ec.message());
  if (!store.cleaned_.empty()) PERIGEE_CHECK(fsync_dir(dir));
  *out = std::move(store);
  return Status::ok();
}

Status CheckpointStore::verify_lock(bool* retaken) {
  *retaken = false;
  return options_.exclusive ? lock_.verify(dir_, "checkpoint folder", retaken) : Status::ok();
}

Status CheckpointStore::check_writable() const {
  const std::string probe = (fs::path(dir_) / kProbeName).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PERIGEE_REQUIRE(fd >= 0, StatusCode::kIoError, "checkpoint folder '", dir_,
                  "' is not writable: cannot create ", probe, ": ", errno_text());
  const char byte = 0;
  const bool wrote = ::write(fd, &byte, 1) == 1;
  const std::string write_error = wrote ? "" : errno_text();
  const bool closed = ::close(fd) == 0;
  const std::string close_error = closed ? "" : errno_text();
  const bool removed = ::unlink(probe.c_str()) == 0;
  PERIGEE_REQUIRE(wrote, StatusCode::kIoError, "checkpoint folder '", dir_, "' is not writable: writing ",
                  probe, ": ", write_error);
  PERIGEE_REQUIRE(closed, StatusCode::kIoError, "checkpoint folder '", dir_, "' is not writable: closing ",
                  probe, ": ", close_error);
  PERIGEE_REQUIRE(removed, StatusCode::kIoError, "checkpoint folder '", dir_, "': cannot remove ", probe,
                  ": ", errno_text());
  // A folder at a name a commit renames onto would fail that commit (and every relaunch's, at the same
  // step): say so now.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    PERIGEE_REQUIRE(!blocks_writes(entry, name), StatusCode::kIoError, "checkpoint folder '", dir_, "': '",
                    entry.path().string(), "' is a folder where a checkpoint file or the '", kLatestName,
                    "' pointer is written; move it away");
  }
  if (ec) return make_error(StatusCode::kIoError, "listing checkpoint folder '", dir_, "': ", ec.message());
  return Status::ok();
}

bool CheckpointStore::free_bytes(uint64_t* bytes) const {
  struct statvfs v {};
  if (::statvfs(dir_.c_str(), &v) != 0) return false;
  *bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  return true;
}

Status CheckpointStore::check_space(uint64_t file_bytes, std::string* warning) const {
  warning->clear();
  uint64_t free = 0;
  if (!free_bytes(&free)) return Status::ok();  // nothing to say: the write will tell
  std::vector<CheckpointEntry> entries;
  PERIGEE_CHECK(list(&entries));
  // The next write always needs a file's room; keep_last + 1 files at the peak, less those already there.
  const uint64_t peak = static_cast<uint64_t>(options_.keep_last) + 1;
  const uint64_t there = std::min<uint64_t>(entries.size(), peak);
  const uint64_t needed = (peak - there) * file_bytes;
  auto mib = [](uint64_t b) { return fixed(static_cast<double>(b) / (1024.0 * 1024.0), 1) + " MiB"; };
  PERIGEE_REQUIRE(free >= file_bytes, StatusCode::kIoError, "checkpoint folder '", dir_, "': ", mib(free),
                  " free, and a checkpoint of this run takes about ", mib(file_bytes),
                  ": free space there or choose another [checkpoint] dir");
  if (free < needed) {
    *warning =
        str_cat("checkpoint folder '", dir_, "': ", mib(free), " free holds ", free / file_bytes,
                " more checkpoint(s) of about ", mib(file_bytes),
                ", but [checkpoint] keep_last = ", options_.keep_last, " needs room for ", peak - there,
                " more (the newest is written before the oldest is removed); the first write that "
                "does not fit fails the run");
  }
  return Status::ok();
}

Status CheckpointStore::list(std::vector<CheckpointEntry>* out) const {
  out->clear();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    int64_t step = 0;
    std::error_code stat_ec;  // an entry that cannot be stat'ed (a link loop) is no checkpoint file
    if (parse_file_name(entry.path().filename().string(), &step) && entry.is_regular_file(stat_ec))
      out->push_back(CheckpointEntry{step, entry.path().string()});
  }
  if (ec) return make_error(StatusCode::kIoError, "listing checkpoint folder '", dir_, "': ", ec.message());
  std::sort(out->begin(), out->end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step > b.step; });
  return Status::ok();
}

Status CheckpointStore::read_latest_pointer(std::string* name) const {
  const std::string path = (fs::path(dir_) / kLatestName).string();
  // O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return make_error(StatusCode::kNotFound, "'", path, "' does not exist");
    return make_error(StatusCode::kIoError, "opening '", path, "': ", errno_text());
  }
  struct stat st {};
  const bool stated = ::fstat(fd, &st) == 0;
  if (!stated || !S_ISREG(st.st_mode)) {
    const std::string why = stated ? "not a regular file" : "cannot stat it: " + errno_text();
    ::close(fd);
    return make_error(StatusCode::kIoError, "'", path, "': ", why);
  }
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n < 0) return make_error(StatusCode::kIoError, "reading '", path, "': ", errno_text());
  std::string content(buf, static_cast<size_t>(n));
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
  int64_t step = 0;
  if (!parse_file_name(content, &step))
    return make_error(StatusCode::kIoError, "'", path, "' does not name a checkpoint file (content '",
                      printable(content, 64), "')");
  *name = content;
  return Status::ok();
}

std::string CheckpointStore::latest_pointer_note(const std::vector<CheckpointEntry>& entries) const {
  std::string latest;
  if (Status s = read_latest_pointer(&latest); !s) {
    if (s.code() == StatusCode::kNotFound)
      return str_cat("no '", kLatestName, "' pointer in '", dir_, "': choosing from the folder");
    return str_cat("ignoring the '", kLatestName, "' pointer: ", first_line(s.message()));
  }
  int64_t latest_step = 0;
  parse_file_name(latest, &latest_step);
  const bool exists = std::any_of(entries.begin(), entries.end(),
                                  [&](const CheckpointEntry& e) { return e.step == latest_step; });
  if (!exists)
    return str_cat("stale '", kLatestName, "' pointer: '", latest, "' is not a checkpoint file in '", dir_,
                   "'");
  if (entries.front().step > latest_step)
    return str_cat(
        "'", kLatestName, "' names '", latest, "' but '", file_name(entries.front().step),
        "' is newer and complete (cut between its rename and the pointer update): trying it first");
  return "";
}

CheckpointStore CheckpointStore::inspect(const std::string& dir) {
  CheckpointStore store;
  store.dir_ = dir;
  return store;
}

Status CheckpointStore::commit(const Snapshot& snapshot, CommitStats* stats) {
  CommitStats local;
  CommitStats& st = stats ? *stats : local;
  st = CommitStats{};
  const auto t_start = Clock::now();
  const int64_t step = snapshot.meta.step;
  const std::string name = file_name(step);
  const std::string final_path = path_for_step(step);
  const std::string tmp = final_path + kTmpSuffix;
  st.path = final_path;
  st.step = step;

  // 1. New file next to the old ones, durable before anything points at it.
  auto t0 = Clock::now();
  Status s = write_snapshot(tmp, snapshot, options_.write, &st.write);
  st.write_seconds = seconds_since(t0);
  if (s) {
    t0 = Clock::now();
    s = fsync_file(tmp);
    st.fsync_seconds = seconds_since(t0);
  }
  if (s && options_.verify_after_commit) {
    t0 = Clock::now();
    Snapshot check;
    s = read_snapshot(tmp, &check);
    if (s && !bit_equal(check, snapshot))
      s = make_error(StatusCode::kIoError, "checkpoint '", tmp,
                     "': read-back differs from the snapshot written");
    st.verify_seconds = seconds_since(t0);
  }
  if (!s) {
    (void)remove_file(tmp);
    uint64_t free = 0;  // a full disk shows as an HDF5 or fsync error: say how full
    if (free_bytes(&free))
      s = make_error(s.code(), s.message(), " (", fixed(static_cast<double>(free) / (1024.0 * 1024.0), 1),
                     " MiB free in '", dir_, "' after removing the partial file)");
    return std::move(s.add_trace(__FILE__, __LINE__));
  }
  std::error_code ec;
  st.file_bytes = fs::file_size(tmp, ec);

  // 2. Checkpoints newer than this one belong to an abandoned timeline.
  t0 = Clock::now();
  std::vector<CheckpointEntry> entries;
  PERIGEE_CHECK(list(&entries));
  bool removed_newer = false;
  for (const CheckpointEntry& e : entries) {
    if (e.step > step) {
      PERIGEE_CHECK(remove_file(e.path));
      st.removed.push_back(e.path);
      removed_newer = true;
    }
  }
  // Files set aside as unreadable hold nothing this run lacks once it commits their step.
  std::vector<std::string> caught_up;
  std::error_code list_ec;
  for (const auto& entry : fs::directory_iterator(dir_, list_ec)) {
    int64_t aside = 0;
    std::error_code stat_ec;
    if (parse_set_aside_name(entry.path().filename().string(), &aside) && aside <= step &&
        entry.is_regular_file(stat_ec))
      caught_up.push_back(entry.path().string());
  }
  for (const std::string& path : caught_up) {
    PERIGEE_CHECK(remove_file(path));
    st.removed.push_back(path);
    removed_newer = true;
  }
  if (removed_newer) PERIGEE_CHECK(fsync_dir(dir_));

  // 3. The commit point.
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    Status e = make_error(StatusCode::kIoError, "renaming '", tmp, "' to '", final_path, "': ", errno_text());
    (void)remove_file(tmp);
    return e;
  }
  PERIGEE_CHECK(fsync_dir(dir_));

  // 4. The pointer, only after the file it names is durable.
  PERIGEE_CHECK(write_file_atomic(dir_, kLatestName, name + "\n"));

  // 5. Retention.
  PERIGEE_CHECK(list(&entries));
  bool removed_old = false;
  for (size_t i = static_cast<size_t>(options_.keep_last); i < entries.size(); ++i) {
    if (entries[i].step == step) continue;
    PERIGEE_CHECK(remove_file(entries[i].path));
    st.removed.push_back(entries[i].path);
    removed_old = true;
  }
  if (removed_old) PERIGEE_CHECK(fsync_dir(dir_));
  st.publish_seconds = seconds_since(t0);
  st.total_seconds = seconds_since(t_start);
  return Status::ok();
}

Status CheckpointStore::load(const std::string& path, const Expectation& expected, Snapshot* out,
                             Compatibility* compatibility) const {
  CheckpointHeader header;
  PERIGEE_CHECK(read_header(path, &header));
  // The folder is ordered by the steps in the names: a file whose name says another step (copied or
  // renamed by hand) would be taken for a newer checkpoint than it is.
  int64_t named = 0;
  PERIGEE_REQUIRE(!parse_file_name(fs::path(path).filename().string(), &named) || named == header.meta.step,
                  StatusCode::kIoError, "checkpoint '", path, "': the file name says step ", named,
                  " but the file holds step ", header.meta.step);
  PERIGEE_CHECK(check_compatible(path, header, expected, compatibility));
  PERIGEE_CHECK(read_snapshot(path, out, &header));
  return Status::ok();
}

Status CheckpointStore::load_latest(const Expectation& expected, Snapshot* out, LoadReport* report,
                                    const LoadLogFn& log) const {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  auto note = [&](std::string line) {
    if (log) log(line);
    rep.notes.push_back(std::move(line));
  };

  std::vector<CheckpointEntry> entries;
  PERIGEE_CHECK(list(&entries));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (is_leftover(name)) {
      note(str_cat("ignoring '", entry.path().string(), "' (left by an interrupted write)"));
    } else if (std::error_code stat_ec; parse_file_name(name, &step) && !entry.is_regular_file(stat_ec)) {
      note(str_cat("ignoring '", entry.path().string(), "': ",
                   entry.is_directory(stat_ec) ? "a folder"
                   : entry.is_symlink(stat_ec) ? "a link to nothing readable"
                                               : "not a regular file",
                   ", not a checkpoint file"));
    }
  }

  if (std::string pointer = latest_pointer_note(entries); !pointer.empty()) note(std::move(pointer));

  if (entries.empty()) return make_error(StatusCode::kNotFound, "no checkpoint in '", dir_, "'");

  for (const CheckpointEntry& e : entries) {
    Compatibility compat;
    Status s = load(e.path, expected, out, &compat);
    // A read error may be transient (EIO at power-on, a storage-path upset), and a newer checkpoint
    // skipped here is removed as an abandoned timeline by the next commit: read it once more first.
    // A mismatch with this job (kInvalidArgument) is no read error.
    if (s.code() == StatusCode::kIoError || s.code() == StatusCode::kHdf5Error) {
      if (log)
        log(str_cat("reading '", e.path, "' failed (", first_line(s.message()), "): reading it again"));
      s = load(e.path, expected, out, &compat);
    }
    if (s) {
      rep.path = e.path;
      rep.step = e.step;
      rep.compatibility = compat;
      if (log) {
        log(str_cat("loaded '", e.path, "' (step ", e.step, ")",
                    compat.world_size_changed ? str_cat("; written by ", compat.stored_world_size,
                                                        " ranks, this run has ", expected.world_size)
                                              : std::string()));
      }
      return Status::ok();
    }
    if (log) log(str_cat("skipping '", e.path, "': ", first_line(s.message())));
    rep.skipped.push_back(SkippedCheckpoint{e.path, e.step, std::move(s)});
  }
  std::string why;
  for (const SkippedCheckpoint& k : rep.skipped) why += str_cat("\n  ", first_line(k.reason.message()));
  return make_error(rep.skipped.front().reason.code(), "no usable checkpoint in '", dir_, "' (",
                    rep.skipped.size(), " tried):", why);
}

}  // namespace perigee::checkpoint
