// Snapshot helpers: structural validation and bitwise comparison.
#include "checkpoint/snapshot.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

namespace perigee::checkpoint {

namespace {

Status validate_name(const std::string& what, const std::string& name) {
  PERIGEE_REQUIRE(!name.empty(), StatusCode::kInvalidArgument, what, " has an empty name");
  PERIGEE_REQUIRE(name != "." && name != "..", StatusCode::kInvalidArgument, what, " '", name,
                  "' is not a valid HDF5 link name");
  PERIGEE_REQUIRE(name.find('/') == std::string::npos && name.find('\0') == std::string::npos,
                  StatusCode::kInvalidArgument, what, " '", name, "' contains '/' or a NUL byte");
  return Status::ok();
}

}  // namespace

uint64_t View::size() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d < 0 ? 0 : d);
  return shape.empty() ? 0 : n;
}

const Buffer* Snapshot::find_buffer(const std::string& name) const {
  for (const Buffer& b : buffers)
    if (b.name == name) return &b;
  return nullptr;
}

Buffer* Snapshot::find_buffer(const std::string& name) {
  for (Buffer& b : buffers)
    if (b.name == name) return &b;
  return nullptr;
}

uint64_t Snapshot::data_bytes() const {
  uint64_t n = 0;
  for (const Buffer& b : buffers) n += b.data.size() * sizeof(float);
  return n;
}

Buffer make_flat_buffer(std::string name, std::vector<float> data, std::string view_name) {
  Buffer b;
  b.name = std::move(name);
  b.views.push_back(View{std::move(view_name), 0, {static_cast<int64_t>(data.size())}});
  b.data = std::move(data);
  return b;
}

Status validate_buffer_layout(const std::string& name, const std::vector<View>& views, uint64_t size) {
  PERIGEE_CHECK(validate_name("buffer", name));
  PERIGEE_REQUIRE(!views.empty(), StatusCode::kInvalidArgument, "buffer '", name, "' has no views");
  std::set<std::string> names;
  std::vector<const View*> by_offset;
  for (const View& v : views) {
    PERIGEE_CHECK(validate_name(str_cat("view of buffer '", name, "'"), v.name));
    PERIGEE_REQUIRE(names.insert(v.name).second, StatusCode::kInvalidArgument, "buffer '", name,
                    "' has two views named '", v.name, "'");
    PERIGEE_REQUIRE(!v.shape.empty(), StatusCode::kInvalidArgument, "view '", name, "/", v.name,
                    "' has rank 0 (a scalar view needs shape {1})");
    uint64_t elements = 1;  // checked against the buffer as it grows, so it cannot wrap
    for (int64_t d : v.shape) {
      PERIGEE_REQUIRE(d >= 1, StatusCode::kInvalidArgument, "view '", name, "/", v.name,
                      "' has an extent < 1 (", d, ")");
      PERIGEE_REQUIRE(static_cast<uint64_t>(d) <= size / elements, StatusCode::kInvalidArgument, "view '",
                      name, "/", v.name, "' has more elements than the buffer holds (", size, ")");
      elements *= static_cast<uint64_t>(d);
    }
    by_offset.push_back(&v);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const View* a, const View* b) { return a->offset < b->offset; });
  uint64_t next = 0;
  for (const View* v : by_offset) {
    PERIGEE_REQUIRE(v->offset == next, StatusCode::kInvalidArgument, "buffer '", name, "': view '", v->name,
                    "' starts at element ", v->offset, " but the views before it end at ", next,
                    v->offset > next ? " (gap)" : " (overlap)");
    PERIGEE_REQUIRE(v->size() <= size - next, StatusCode::kInvalidArgument, "buffer '", name, "': view '",
                    v->name, "' at element ", next, " ends past the buffer's ", size, " elements");
    next += v->size();
  }
  PERIGEE_REQUIRE(next == size, StatusCode::kInvalidArgument, "buffer '", name, "': views cover ", next,
                  " elements but the buffer holds ", size);
  return Status::ok();
}

Status validate_meta(const SnapshotMeta& m) {
  PERIGEE_REQUIRE(m.step >= 0, StatusCode::kInvalidArgument, "step is negative (", m.step, ")");
  PERIGEE_REQUIRE(m.world_size >= 1, StatusCode::kInvalidArgument, "world_size must be >= 1 (got ",
                  m.world_size, ")");
  PERIGEE_REQUIRE(m.data_cursors.size() == static_cast<size_t>(m.world_size), StatusCode::kInvalidArgument,
                  "data_cursors has ", m.data_cursors.size(), " rows but world_size is ", m.world_size,
                  " (one row per rank)");
  const size_t words = m.data_cursors.front().size();
  PERIGEE_REQUIRE(words >= 1, StatusCode::kInvalidArgument, "data cursor of rank 0 is empty");
  for (size_t r = 0; r < m.data_cursors.size(); ++r)
    PERIGEE_REQUIRE(m.data_cursors[r].size() == words, StatusCode::kInvalidArgument, "data cursor of rank ",
                    r, " has ", m.data_cursors[r].size(), " words, rank 0 has ", words);
  for (const auto& [name, words_of] : m.rng_states) {
    PERIGEE_REQUIRE(!name.empty() && name.find('\0') == std::string::npos, StatusCode::kInvalidArgument,
                    "RNG state name is empty or holds a NUL byte");
    PERIGEE_REQUIRE(!words_of.empty(), StatusCode::kInvalidArgument, "RNG state '", name, "' is empty");
  }
  for (const auto& [name, value] : m.model_shape) {
    (void)value;
    PERIGEE_REQUIRE(!name.empty() && name.find('\0') == std::string::npos, StatusCode::kInvalidArgument,
                    "model_shape key is empty or holds a NUL byte");
  }
  PERIGEE_REQUIRE(m.lr_schedule.kind.find('\0') == std::string::npos, StatusCode::kInvalidArgument,
                  "lr_schedule.kind holds a NUL byte");
  const LrScheduleState& lr = m.lr_schedule;
  PERIGEE_REQUIRE(std::isfinite(lr.base_lr) && std::isfinite(lr.min_lr_ratio) && std::isfinite(lr.last_lr),
                  StatusCode::kInvalidArgument, "lr_schedule holds a value that is not finite (base_lr ",
                  lr.base_lr, ", min_lr_ratio ", lr.min_lr_ratio, ", last_lr ", lr.last_lr, ")");
  PERIGEE_REQUIRE(m.config_json.find('\0') == std::string::npos, StatusCode::kInvalidArgument,
                  "config_json holds a NUL byte");
  for (const auto& [name, values] : m.series) {
    PERIGEE_REQUIRE(!name.empty() && name.find('\0') == std::string::npos, StatusCode::kInvalidArgument,
                    "series name is empty or holds a NUL byte");
    PERIGEE_REQUIRE(!values.empty(), StatusCode::kInvalidArgument, "series '", name, "' is empty");
  }
  return Status::ok();
}

Status validate_snapshot(const Snapshot& s) {
  PERIGEE_CHECK(validate_meta(s.meta));
  PERIGEE_REQUIRE(!s.buffers.empty(), StatusCode::kInvalidArgument, "snapshot has no buffers");
  std::set<std::string> names;
  for (const Buffer& b : s.buffers) {
    PERIGEE_CHECK(validate_buffer_layout(b.name, b.views, b.data.size()));
    PERIGEE_REQUIRE(names.insert(b.name).second, StatusCode::kInvalidArgument, "two buffers are named '",
                    b.name, "'");
  }
  return Status::ok();
}

bool bit_equal(const Snapshot& a, const Snapshot& b, std::string* why) {
  auto fail = [&](std::string text) {
    if (why) *why = std::move(text);
    return false;
  };
  if (!(a.meta == b.meta)) return fail("metadata differs");
  if (a.buffers.size() != b.buffers.size()) return fail("buffer count differs");
  for (size_t i = 0; i < a.buffers.size(); ++i) {
    const Buffer& x = a.buffers[i];
    const Buffer& y = b.buffers[i];
    if (x.name != y.name) return fail(str_cat("buffer ", i, " name '", x.name, "' vs '", y.name, "'"));
    if (x.views != y.views) return fail(str_cat("buffer '", x.name, "' view table differs"));
    if (x.data.size() != y.data.size()) return fail(str_cat("buffer '", x.name, "' size differs"));
    if (!x.data.empty() && std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(float)) != 0) {
      for (size_t k = 0; k < x.data.size(); ++k) {
        if (std::memcmp(&x.data[k], &y.data[k], sizeof(float)) != 0)
          return fail(str_cat("buffer '", x.name, "' element ", k, ": ", x.data[k], " vs ", y.data[k]));
      }
    }
  }
  return true;
}

}  // namespace perigee::checkpoint
