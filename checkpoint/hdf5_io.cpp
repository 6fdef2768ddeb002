// HDF5 checkpoint file: what the writer and the reader share, the CRC32C of a view and the manifest
// digest (layout in docs/checkpoint.md). The writer is hdf5_write.cpp, the verifying reader
// hdf5_read.cpp, their common HDF5 helpers hdf5_io_internal.hpp.
#include "checkpoint/hdf5_io.hpp"

#include <bit>
#include <string>
#include <vector>

#include "checkpoint/crc32c.hpp"

namespace perigee::checkpoint {

namespace {

// ------------------------------------------------------------------ manifest encoding

class Encoder {
 public:
  void u32(uint32_t v) { put(v); }
  void i32(int32_t v) { put(static_cast<uint32_t>(v)); }
  void u64(uint64_t v) { put(v); }
  void i64(int64_t v) { put(static_cast<uint64_t>(v)); }
  void f64(double v) { put(std::bit_cast<uint64_t>(v)); }
  void str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    bytes_.append(s);
  }
  const std::string& bytes() const { return bytes_; }

 private:
  template <typename U>
  void put(U v) {
    for (size_t i = 0; i < sizeof(U); ++i) bytes_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  std::string bytes_;
};

}  // namespace

const BufferInfo* CheckpointHeader::find_buffer(const std::string& name) const {
  for (const BufferInfo& b : buffers)
    if (b.name == name) return &b;
  return nullptr;
}

uint32_t view_crc32c(const Buffer& buffer, const View& view) {
  return crc32c(buffer.data.data() + view.offset, view.size() * sizeof(float));
}

uint32_t manifest_crc32c(int32_t format_version, const SnapshotMeta& m,
                         const std::vector<BufferInfo>& buffers) {
  Encoder e;
  e.str(kFormatName);
  e.i32(format_version);
  e.i64(m.step);
  e.i32(m.world_size);
  e.u32(static_cast<uint32_t>(m.rng_states.size()));
  for (const auto& [name, words] : m.rng_states) {
    e.str(name);
    e.u32(static_cast<uint32_t>(words.size()));
    for (uint64_t w : words) e.u64(w);
  }
  e.u32(static_cast<uint32_t>(m.data_cursors.size()));
  e.u32(static_cast<uint32_t>(m.data_cursors.empty() ? 0 : m.data_cursors.front().size()));
  for (const auto& row : m.data_cursors)
    for (uint64_t w : row) e.u64(w);
  e.str(m.lr_schedule.kind);
  e.f64(m.lr_schedule.base_lr);
  e.f64(m.lr_schedule.min_lr_ratio);
  e.i64(m.lr_schedule.warmup_steps);
  e.i64(m.lr_schedule.total_steps);
  e.f64(m.lr_schedule.last_lr);
  e.u32(static_cast<uint32_t>(m.model_shape.size()));
  for (const auto& [name, value] : m.model_shape) {
    e.str(name);
    e.i64(value);
  }
  e.str(m.config_json);
  if (format_version >= 2) {
    e.u32(static_cast<uint32_t>(m.series.size()));
    for (const auto& [name, values] : m.series) {
      e.str(name);
      e.u32(static_cast<uint32_t>(values.size()));
      for (double v : values) e.f64(v);
    }
  }
  e.u32(static_cast<uint32_t>(buffers.size()));
  for (const BufferInfo& b : buffers) {
    e.str(b.name);
    e.u64(b.size);
    e.u32(static_cast<uint32_t>(b.views.size()));
    for (size_t v = 0; v < b.views.size(); ++v) {
      const View& view = b.views[v];
      e.str(view.name);
      e.u64(view.offset);
      e.u32(static_cast<uint32_t>(view.shape.size()));
      for (int64_t d : view.shape) e.i64(d);
      e.u32(v < b.crc32c.size() ? b.crc32c[v] : 0);
    }
  }
  return crc32c(e.bytes().data(), e.bytes().size());
}

}  // namespace perigee::checkpoint
