// perigee-ckpt: checkpoint files for people and scripts (checkpoint/store.hpp, checkpoint/hdf5_io.hpp).
//   perigee-ckpt verify DIR|FILE          every checkpoint read back and verified; exit 1 if any fails
//   perigee-ckpt info FILE                step, world size, model shape, buffers (header verified)
//   perigee-ckpt diff A B [--buffer NAME]  exit 0 only when the buffers are bit-identical
// Exit status: 0 good / identical, 1 a checkpoint fails or the buffers differ, 2 usage error or a
// file that cannot be read (diff, info).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/snapshot.hpp"
#include "checkpoint/store.hpp"
#include "core/version.hpp"
#include "runtime/orbit_clock.hpp"  // the orbit clock's file name (header only)

namespace {

namespace fs = std::filesystem;
namespace ck = perigee::checkpoint;
using perigee::Status;
using perigee::str_cat;

constexpr int kBad = 1;
constexpr int kUsage = 2;

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += str_cat(i ? ", " : "", shape[i]);
  return out + "]";
}

// A status message without its "    at file:line" trace lines: one FAIL line per file for scripts.
std::string without_trace(const std::string& message) {
  std::string out;
  size_t from = 0;
  while (from <= message.size()) {
    const size_t end = std::min(message.find('\n', from), message.size());
    const std::string line = message.substr(from, end - from);
    if (!line.starts_with("    at ")) out += (out.empty() ? "" : " ") + line;
    from = end + 1;
  }
  return out;
}

// Reads and verifies one checkpoint; "" when good, else why not.
std::string verify_file(const std::string& path, int64_t name_step, ck::CheckpointHeader* header) {
  ck::Snapshot snapshot;
  Status s = ck::read_snapshot(path, &snapshot, header);
  if (!s.is_ok()) return without_trace(s.message());
  if (name_step >= 0 && snapshot.meta.step != name_step) {
    return str_cat("the file name says step ", name_step, " but the file holds step ", snapshot.meta.step);
  }
  return "";
}

int verify(const std::string& target) {
  std::error_code ec;
  std::vector<std::pair<int64_t, std::string>> files;  // (step from the name or -1, path)
  if (fs::is_directory(target, ec)) {
    for (const auto& e : fs::directory_iterator(target, ec)) {
      const std::string name = e.path().filename().string();
      int64_t step = 0;
      if (ck::CheckpointStore::parse_file_name(name, &step)) {
        files.emplace_back(step, e.path().string());
      } else if (ck::CheckpointStore::parse_set_aside_name(name, &step)) {
        // Not a checkpoint of the folder any more (loads pass it over), but it may hold one: say what.
        ck::CheckpointHeader header;
        const std::string why = verify_file(e.path().string(), step, &header);
        std::printf(
            "note  %s: set aside by a resume that could not use it (removed when the run commits step %lld); "
            "%s\n",
            name.c_str(), static_cast<long long>(step),
            why.empty() ? "it verifies now: rename it back to use it" : ("it still fails: " + why).c_str());
      } else if (ck::CheckpointStore::is_leftover(name)) {
        std::printf(
            "note  %s: leftover of a cut write (loads ignore it; the store removes it when it opens)\n",
            name.c_str());
      } else if (name == std::string(perigee::runtime::kOrbitClockFile) + ".tmp") {
        std::printf(
            "note  %s: leftover of a cut write of the orbit clock (%s is kept; rank 0 removes it when it "
            "opens the folder)\n",
            name.c_str(), perigee::runtime::kOrbitClockFile);
      }
    }
    if (ec) {
      std::fprintf(stderr, "perigee-ckpt: cannot list %s: %s\n", target.c_str(), ec.message().c_str());
      return kUsage;
    }
    std::sort(files.begin(), files.end());
    // The store's own judgement of `latest`, on a store that only reads (open() would remove leftovers).
    const ck::CheckpointStore store = ck::CheckpointStore::inspect(target);
    std::vector<ck::CheckpointEntry> entries;
    if (store.list(&entries).is_ok() && !entries.empty()) {
      const std::string pointer = store.latest_pointer_note(entries);
      if (!pointer.empty()) std::printf("note  %s\n", pointer.c_str());
    }
  } else if (fs::is_regular_file(target, ec)) {
    int64_t step = -1;
    if (!ck::CheckpointStore::parse_file_name(fs::path(target).filename().string(), &step)) step = -1;
    files.emplace_back(step, target);
  } else {
    [[maybe_unused]] const auto st = fs::status(target, ec);  // why not: nothing there, a loop, ...
    std::fprintf(stderr, "perigee-ckpt: %s is neither a checkpoint folder nor a file (%s)\n", target.c_str(),
                 ec ? ec.message().c_str() : "a special file");
    return kUsage;
  }
  if (files.empty()) {
    std::printf("FAIL  %s: no checkpoint (ckpt-<step>.h5) to verify\n", target.c_str());
    return kBad;
  }
  int failed = 0;
  for (const auto& [step, path] : files) {
    ck::CheckpointHeader header;
    const std::string why = verify_file(path, step, &header);
    const std::string name = fs::path(path).filename().string();
    if (why.empty()) {
      std::printf("OK    %s: step %lld, %d rank(s), %zu buffer(s), %s\n", name.c_str(),
                  static_cast<long long>(header.meta.step), header.meta.world_size, header.buffers.size(),
                  mib(header.file_bytes).c_str());
      if (header.data_bytes > 0 && header.file_bytes > header.data_bytes) {
        std::printf(
            "note  %s: %llu byte(s) after the HDF5 data, which no read uses (appended to after it was "
            "written?)\n",
            name.c_str(), static_cast<unsigned long long>(header.file_bytes - header.data_bytes));
      }
    } else {
      ++failed;
      std::printf("FAIL  %s: %s\n", name.c_str(), why.c_str());
    }
  }
  std::printf("%s: %zu checkpoint(s), %d failed\n", failed ? "FAIL" : "OK", files.size(), failed);
  return failed ? kBad : 0;
}

int info(const std::string& path) {
  ck::CheckpointHeader h;
  Status s = ck::read_header(path, &h);
  if (!s.is_ok()) {
    std::fprintf(stderr, "perigee-ckpt: %s\n", s.message().c_str());
    return kUsage;
  }
  const ck::SnapshotMeta& m = h.meta;
  std::printf("file        %s (%s, format version %d, manifest crc32c %08x)\n", path.c_str(),
              mib(h.file_bytes).c_str(), h.format_version, h.manifest_crc32c);
  std::printf("step        %lld\n", static_cast<long long>(m.step));
  std::printf("world size  %d\n", m.world_size);
  std::string shape;
  for (const auto& [k, v] : m.model_shape) shape += str_cat(shape.empty() ? "" : ", ", k, " ", v);
  std::printf("model       %s\n", shape.c_str());
  std::printf("lr          %s: base %g, min ratio %g, warmup %lld, total %lld, last %g\n",
              m.lr_schedule.kind.c_str(), m.lr_schedule.base_lr, m.lr_schedule.min_lr_ratio,
              static_cast<long long>(m.lr_schedule.warmup_steps),
              static_cast<long long>(m.lr_schedule.total_steps), m.lr_schedule.last_lr);
  for (size_t r = 0; r < m.data_cursors.size(); ++r) {
    std::string words;
    for (uint64_t w : m.data_cursors[r]) words += str_cat(words.empty() ? "" : " ", w);
    std::printf("cursor r%-3zu %s\n", r, words.c_str());
  }
  for (const auto& [name, state] : m.rng_states)
    std::printf("rng         %s (%zu word(s))\n", name.c_str(), state.size());
  for (const auto& [name, values] : m.series) {
    std::printf("series      %s (%zu value(s)", name.c_str(), values.size());
    if (!values.empty()) std::printf(", newest %.9g", values.back());
    std::printf(")\n");
  }
  for (const ck::BufferInfo& b : h.buffers) {
    std::printf("buffer      %-8s %llu floats (%s) in %zu view(s)\n", b.name.c_str(),
                static_cast<unsigned long long>(b.size), mib(b.size * sizeof(float)).c_str(), b.views.size());
  }
  if (!h.buffers.empty()) {
    std::printf("views of %s:\n", h.buffers[0].name.c_str());
    for (const ck::View& v : h.buffers[0].views) {
      std::printf("  %-24s %s at %llu\n", v.name.c_str(), shape_text(v.shape).c_str(),
                  static_cast<unsigned long long>(v.offset));
    }
  }
  std::printf("(header and manifest verified; `perigee-ckpt verify` also reads and checks every tensor)\n");
  return 0;
}

// The view of `buffer` that holds element `i`.
std::string view_of(const ck::Buffer& buffer, uint64_t i) {
  for (const ck::View& v : buffer.views) {
    if (i >= v.offset && i < v.offset + v.size()) return str_cat(v.name, "[", i - v.offset, "]");
  }
  return str_cat("[", i, "]");
}

int diff(const std::string& a_path, const std::string& b_path, std::vector<std::string> names) {
  ck::Snapshot a, b;
  for (auto [path, snap] : {std::pair{&a_path, &a}, std::pair{&b_path, &b}}) {
    Status s = ck::read_snapshot(*path, snap);
    if (!s.is_ok()) {
      std::fprintf(stderr, "perigee-ckpt: %s\n", s.message().c_str());
      return kUsage;
    }
  }
  std::printf("A: %s (step %lld, %d rank(s))\nB: %s (step %lld, %d rank(s))\n", a_path.c_str(),
              static_cast<long long>(a.meta.step), a.meta.world_size, b_path.c_str(),
              static_cast<long long>(b.meta.step), b.meta.world_size);
  std::set<std::string> all;
  for (const auto* s : {&a, &b}) {
    for (const ck::Buffer& buf : s->buffers) all.insert(buf.name);
  }
  for (const std::string& name : names) {
    if (all.count(name) == 0) {  // a typo, not a difference
      std::string have;
      for (const std::string& n : all) have += (have.empty() ? "" : ", ") + n;
      std::fprintf(stderr, "perigee-ckpt: --buffer %s: neither file has it (they have: %s)\n", name.c_str(),
                   have.c_str());
      return kUsage;
    }
  }
  if (names.empty()) names.assign(all.begin(), all.end());
  int differing = 0;
  for (const std::string& name : names) {
    const ck::Buffer* x = a.find_buffer(name);
    const ck::Buffer* y = b.find_buffer(name);
    if (x == nullptr || y == nullptr) {
      std::printf("%-8s missing in %s\n", name.c_str(),
                  x == nullptr && y == nullptr ? "both" : (x ? "B" : "A"));
      ++differing;
      continue;
    }
    if (x->data.size() != y->data.size()) {
      std::printf("%-8s sizes differ: %zu vs %zu floats\n", name.c_str(), x->data.size(), y->data.size());
      ++differing;
      continue;
    }
    uint64_t count = 0, first = 0;
    double max_abs = 0.0;
    for (size_t i = 0; i < x->data.size(); ++i) {
      uint32_t u = 0, v = 0;
      std::memcpy(&u, &x->data[i], 4);
      std::memcpy(&v, &y->data[i], 4);
      if (u == v) continue;
      if (count++ == 0) first = i;
      const double d = std::fabs(static_cast<double>(x->data[i]) - static_cast<double>(y->data[i]));
      max_abs = std::isnan(d) ? d : std::max(max_abs, d);
    }
    if (count == 0) {
      std::printf("%-8s bit-identical (%zu floats)\n", name.c_str(), x->data.size());
    } else {
      ++differing;
      std::printf("%-8s %llu of %zu floats differ, max abs diff %.9g; first at %s: %.9g vs %.9g\n",
                  name.c_str(), static_cast<unsigned long long>(count), x->data.size(), max_abs,
                  view_of(*x, first).c_str(), x->data[first], y->data[first]);
    }
  }
  std::printf("%s\n", differing ? "DIFFERENT" : "IDENTICAL");
  return differing ? kBad : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"perigee-ckpt: verify, inspect and compare Perigee checkpoints (docs/supervisor.md)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", perigee::version_text("perigee-ckpt"));
  std::string target, file, a, b;
  std::vector<std::string> buffers;
  CLI::App* v =
      app.add_subcommand("verify", "read back and verify every checkpoint in a folder, or one file");
  v->add_option("target", target, "checkpoint folder or file")->required();
  CLI::App* i = app.add_subcommand("info", "print a checkpoint's step, world size, shape and buffers");
  i->add_option("file", file, "checkpoint file")->required();
  CLI::App* d = app.add_subcommand("diff", "compare the buffers of two checkpoints bit for bit");
  d->add_option("a", a, "first checkpoint file")->required();
  d->add_option("b", b, "second checkpoint file")->required();
  d->add_option("--buffer", buffers, "buffer to compare (repeatable; default: every buffer)");
  const std::string command = argc > 1 ? argv[1] : "";
  if (!command.empty() && command[0] != '-' && command != "verify" && command != "info" &&
      command != "diff") {
    std::fprintf(stderr, "perigee-ckpt: unknown command '%s' (verify, info or diff; --help lists them)\n",
                 argv[1]);
    return kUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsage;
  }
  try {
    if (v->parsed()) return verify(target);
    if (i->parsed()) return info(file);
    return diff(a, b, buffers);
  } catch (const std::exception& e) {  // e.g. an allocation for a header that slipped past the checks
    std::fprintf(stderr, "perigee-ckpt: %s\n", e.what());
    return kUsage;
  }
}
