// HDF5 checkpoint file, the writer: write_snapshot (layout in docs/checkpoint.md).
#include "checkpoint/hdf5_io.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "checkpoint/fletcher32.hpp"
#include "checkpoint/hdf5_check.hpp"
#include "checkpoint/hdf5_io_internal.hpp"

namespace perigee::checkpoint {

namespace {

using detail::child;
using detail::Loc;
using detail::make_fapl;
using detail::where;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Status write_attr(const Loc& loc, const char* name, hid_t file_type, hid_t mem_type, const void* data,
                  hsize_t count /* 0 = scalar */) {
  Hdf5Id space(count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, nullptr));
  PERIGEE_CHECK_HDF5(space.get(), where(loc), ": creating the dataspace of attribute '", name, "'");
  Hdf5Id attr(H5Acreate2(loc.id, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(attr.get(), where(loc), ": creating attribute '", name, "'");
  PERIGEE_CHECK_HDF5(H5Awrite(attr.get(), mem_type, data), where(loc), ": writing attribute '", name, "'");
  PERIGEE_CHECK_HDF5(attr.reset(), where(loc), ": closing attribute '", name, "'");
  return Status::ok();
}

Status write_attr_u32(const Loc& loc, const char* name, uint32_t v) {
  return write_attr(loc, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &v, 0);
}
Status write_attr_i32(const Loc& loc, const char* name, int32_t v) {
  return write_attr(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, 0);
}
Status write_attr_u64(const Loc& loc, const char* name, uint64_t v) {
  return write_attr(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, 0);
}
Status write_attr_i64(const Loc& loc, const char* name, int64_t v) {
  return write_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 0);
}
Status write_attr_f64(const Loc& loc, const char* name, double v) {
  return write_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, 0);
}

// Fixed-length, NUL-terminated ASCII string type holding s plus its terminator.
Hdf5Id make_string_type(size_t length) {
  Hdf5Id type(H5Tcopy(H5T_C_S1));
  if (!type.valid()) return type;
  if (H5Tset_size(type.get(), length + 1) < 0 || H5Tset_strpad(type.get(), H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(type.get(), H5T_CSET_ASCII) < 0) {
    type.reset();
    return Hdf5Id();
  }
  return type;
}

Status write_attr_string(const Loc& loc, const char* name, const std::string& s) {
  Hdf5Id type = make_string_type(s.size());
  PERIGEE_CHECK_HDF5(type.get(), where(loc), ": making the string type of attribute '", name, "'");
  return write_attr(loc, name, type.get(), type.get(), s.c_str(), 0);
}

Status create_group(const Loc& parent, const std::string& name, Hdf5Id* out) {
  *out = Hdf5Id(H5Gcreate2(parent.id, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(out->get(), "checkpoint '", parent.file, "': creating group ", child(parent.path, name));
  return Status::ok();
}

// Chunk extents for a dataset of `shape` with elements of `elem` bytes: the full extents, with the
// leading dimensions cut until a chunk holds at most `target` bytes. A cut dimension is split into
// equal parts (HDF5 stores edge chunks at full size, so uneven splits would waste space).
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& shape, size_t elem, uint64_t target) {
  std::vector<hsize_t> chunk = shape;
  for (size_t i = 0; i < chunk.size(); ++i) {
    uint64_t bytes = elem;
    for (hsize_t d : chunk) bytes *= d;
    if (bytes <= target) break;
    uint64_t rest = elem;
    for (size_t j = i + 1; j < chunk.size(); ++j) rest *= chunk[j];
    const uint64_t max_extent = std::max<uint64_t>(1, target / rest);
    const uint64_t parts = (shape[i] + max_extent - 1) / max_extent;
    chunk[i] = (shape[i] + parts - 1) / parts;
  }
  return chunk;
}

// Writes every chunk of a float dataset directly (H5Dwrite_chunk) in the form HDF5's Fletcher32
// filter stores it: the chunk's bytes (edge chunks zero-padded to full size), then the checksum
// little-endian. Bypassing the filter pipeline avoids its slow checksum and an extra copy; reads
// still go through the pipeline, so HDF5 verifies every chunk we wrote.
Status write_chunks_direct(const Loc& dloc, hid_t dataset, const std::vector<hsize_t>& dims,
                           const std::vector<hsize_t>& chunk, const float* src,
                           std::vector<unsigned char>* scratch) {
  const size_t rank = dims.size();
  uint64_t chunk_elems = 1;
  for (hsize_t c : chunk) chunk_elems *= c;
  const size_t chunk_bytes = chunk_elems * sizeof(float);
  scratch->resize(chunk_bytes + 4);
  float* dst = reinterpret_cast<float*>(scratch->data());
  std::vector<uint64_t> stride(rank, 1), cstride(rank, 1);
  for (size_t i = rank - 1; i-- > 0;) {
    stride[i] = stride[i + 1] * dims[i + 1];
    cstride[i] = cstride[i + 1] * chunk[i + 1];
  }
  bool trailing_full = true;
  for (size_t i = 1; i < rank; ++i) trailing_full = trailing_full && chunk[i] == dims[i];
  std::vector<hsize_t> grid(rank), coord(rank, 0), offset(rank), extent(rank), idx(rank);
  for (size_t i = 0; i < rank; ++i) grid[i] = (dims[i] + chunk[i] - 1) / chunk[i];
  for (;;) {
    bool partial = false;
    for (size_t i = 0; i < rank; ++i) {
      offset[i] = coord[i] * chunk[i];
      extent[i] = std::min<hsize_t>(chunk[i], dims[i] - offset[i]);
      partial = partial || extent[i] < chunk[i];
    }
    if (partial) std::memset(dst, 0, chunk_bytes);
    if (trailing_full) {
      std::memcpy(dst, src + offset[0] * stride[0], extent[0] * stride[0] * sizeof(float));
    } else {  // gather rows of the last dimension
      std::fill(idx.begin(), idx.end(), 0);
      for (;;) {
        uint64_t from = offset[rank - 1], to = 0;
        for (size_t i = 0; i + 1 < rank; ++i) {
          from += (offset[i] + idx[i]) * stride[i];
          to += idx[i] * cstride[i];
        }
        std::memcpy(dst + to, src + from, extent[rank - 1] * sizeof(float));
        size_t i = rank - 1;
        while (i-- > 0 && ++idx[i] == extent[i]) idx[i] = 0;
        if (i == static_cast<size_t>(-1)) break;
      }
    }
    const uint32_t sum = hdf5_fletcher32(dst, chunk_bytes);
    unsigned char* tail = scratch->data() + chunk_bytes;
    for (int b = 0; b < 4; ++b) tail[b] = static_cast<unsigned char>(sum >> (8 * b));
    PERIGEE_CHECK_HDF5(
        H5Dwrite_chunk(dataset, H5P_DEFAULT, 0, offset.data(), chunk_bytes + 4, scratch->data()), where(dloc),
        ": writing a chunk");
    size_t i = rank;
    while (i-- > 0 && ++coord[i] == grid[i]) coord[i] = 0;
    if (i == static_cast<size_t>(-1)) return Status::ok();
  }
}

// A chunked dataset with the Fletcher32 filter. Float data on a little-endian host is written
// chunk by chunk (write_chunks_direct); anything else through H5Dwrite.
Status write_chunked(const Loc& parent, const std::string& name, hid_t file_type, hid_t mem_type, size_t elem,
                     const std::vector<hsize_t>& dims, const void* data, uint64_t chunk_target,
                     std::vector<unsigned char>* scratch, Hdf5Id* out) {
  const std::string path = child(parent.path, name);
  Hdf5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  PERIGEE_CHECK_HDF5(space.get(), "checkpoint '", parent.file, "': ", path, ": creating the dataspace");
  Hdf5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
  PERIGEE_CHECK_HDF5(dcpl.get(), "checkpoint '", parent.file, "': ", path, ": creating the property list");
  const std::vector<hsize_t> chunk = chunk_dims(dims, elem, chunk_target);
  PERIGEE_CHECK_HDF5(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "checkpoint '",
                     parent.file, "': ", path, ": setting the chunk shape");
  PERIGEE_CHECK_HDF5(H5Pset_fletcher32(dcpl.get()), "checkpoint '", parent.file, "': ", path,
                     ": enabling Fletcher32");
  PERIGEE_CHECK_HDF5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "checkpoint '", parent.file,
                     "': ", path, ": setting the fill time");
  *out = Hdf5Id(
      H5Dcreate2(parent.id, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(out->get(), "checkpoint '", parent.file, "': ", path, ": creating the dataset");
  const bool direct = scratch && mem_type == H5T_NATIVE_FLOAT && file_type == H5T_IEEE_F32LE &&
                      std::endian::native == std::endian::little;
  if (direct) {
    PERIGEE_CHECK(write_chunks_direct(Loc{parent.file, path, out->get()}, out->get(), dims, chunk,
                                      static_cast<const float*>(data), scratch));
  } else {
    PERIGEE_CHECK_HDF5(H5Dwrite(out->get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "checkpoint '",
                       parent.file, "': ", path, ": writing the data");
  }
  return Status::ok();
}

}  // namespace

Status write_snapshot(const std::string& path, const Snapshot& snapshot, const WriteOptions& options,
                      WriteStats* stats) {
  PERIGEE_REQUIRE(options.chunk_bytes >= 4 && options.chunk_bytes <= (4ull << 30) - 1,
                  StatusCode::kInvalidArgument, "checkpoint '", path, "': chunk_bytes must be in [4, 4 GiB)");
  if (Status s = validate_snapshot(snapshot); !s)
    return make_error(StatusCode::kInvalidArgument, "checkpoint '", path,
                      "': snapshot is invalid: ", s.message());
  WriteStats local;
  WriteStats& st = stats ? *stats : local;
  st = WriteStats{};

  auto t0 = Clock::now();
  std::vector<BufferInfo> infos;
  for (const Buffer& b : snapshot.buffers) {
    BufferInfo& info = infos.emplace_back();
    info.name = b.name;
    info.size = b.data.size();
    info.views = b.views;
    for (const View& v : b.views) info.crc32c.push_back(view_crc32c(b, v));
    st.data_bytes += b.data.size() * sizeof(float);
  }
  const uint32_t manifest = manifest_crc32c(kFormatVersion, snapshot.meta, infos);
  st.crc_seconds = seconds_since(t0);

  t0 = Clock::now();
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  hdf5_silence_errors();
  Hdf5Id fapl = make_fapl();
  PERIGEE_CHECK_HDF5(fapl.get(), "checkpoint '", path, "': creating the file access properties");
  Hdf5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  PERIGEE_CHECK_HDF5(file.get(), "checkpoint '", path, "': creating the file");
  const Loc root{path, "/", file.get()};
  const SnapshotMeta& m = snapshot.meta;
  PERIGEE_CHECK(write_attr_string(root, "format", kFormatName));
  PERIGEE_CHECK(write_attr_i32(root, "format_version", kFormatVersion));
  PERIGEE_CHECK(write_attr_i64(root, "step", m.step));
  PERIGEE_CHECK(write_attr_i32(root, "world_size", m.world_size));

  Hdf5Id meta_group;
  PERIGEE_CHECK(create_group(root, "meta", &meta_group));
  const Loc mloc{path, "/meta", meta_group.get()};
  {
    Hdf5Id type = make_string_type(m.config_json.size());
    PERIGEE_CHECK_HDF5(type.get(), "checkpoint '", path, "': /meta/config_json: making the string type");
    Hdf5Id space(H5Screate(H5S_SCALAR));
    PERIGEE_CHECK_HDF5(space.get(), "checkpoint '", path, "': /meta/config_json: creating the dataspace");
    Hdf5Id ds(H5Dcreate2(meta_group.get(), "config_json", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT));
    PERIGEE_CHECK_HDF5(ds.get(), "checkpoint '", path, "': /meta/config_json: creating the dataset");
    PERIGEE_CHECK_HDF5(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, m.config_json.c_str()),
                       "checkpoint '", path, "': /meta/config_json: writing");
  }
  {
    const std::vector<hsize_t> dims = {m.data_cursors.size(), m.data_cursors.front().size()};
    std::vector<uint64_t> flat;
    for (const auto& row : m.data_cursors) flat.insert(flat.end(), row.begin(), row.end());
    Hdf5Id ds;
    PERIGEE_CHECK(write_chunked(mloc, "data_cursors", H5T_STD_U64LE, H5T_NATIVE_UINT64, 8, dims, flat.data(),
                                options.chunk_bytes, nullptr, &ds));
  }
  {
    Hdf5Id g;
    PERIGEE_CHECK(create_group(mloc, "rng_states", &g));
    const Loc loc{path, "/meta/rng_states", g.get()};
    for (const auto& [name, words] : m.rng_states)
      PERIGEE_CHECK(
          write_attr(loc, name.c_str(), H5T_STD_U64LE, H5T_NATIVE_UINT64, words.data(), words.size()));
  }
  {
    Hdf5Id g;
    PERIGEE_CHECK(create_group(mloc, "model_shape", &g));
    const Loc loc{path, "/meta/model_shape", g.get()};
    for (const auto& [name, value] : m.model_shape) PERIGEE_CHECK(write_attr_i64(loc, name.c_str(), value));
  }
  {
    Hdf5Id g;
    PERIGEE_CHECK(create_group(mloc, "lr_schedule", &g));
    const Loc loc{path, "/meta/lr_schedule", g.get()};
    const LrScheduleState& s = m.lr_schedule;
    PERIGEE_CHECK(write_attr_string(loc, "kind", s.kind));
    PERIGEE_CHECK(write_attr_f64(loc, "base_lr", s.base_lr));
    PERIGEE_CHECK(write_attr_f64(loc, "min_lr_ratio", s.min_lr_ratio));
    PERIGEE_CHECK(write_attr_i64(loc, "warmup_steps", s.warmup_steps));
    PERIGEE_CHECK(write_attr_i64(loc, "total_steps", s.total_steps));
    PERIGEE_CHECK(write_attr_f64(loc, "last_lr", s.last_lr));
  }
  {
    Hdf5Id g;
    PERIGEE_CHECK(create_group(mloc, "series", &g));
    const Loc loc{path, "/meta/series", g.get()};
    for (const auto& [name, values] : m.series)
      PERIGEE_CHECK(
          write_attr(loc, name.c_str(), H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.data(), values.size()));
  }
  PERIGEE_CHECK_HDF5(meta_group.reset(), "checkpoint '", path, "': closing /meta");

  Hdf5Id buffers_group;
  PERIGEE_CHECK(create_group(root, "buffers", &buffers_group));
  std::vector<unsigned char> scratch;  // one chunk plus its checksum
  const Loc bloc{path, "/buffers", buffers_group.get()};
  for (size_t b = 0; b < snapshot.buffers.size(); ++b) {
    const Buffer& buffer = snapshot.buffers[b];
    Hdf5Id g;
    PERIGEE_CHECK(create_group(bloc, buffer.name, &g));
    const Loc gloc{path, child("/buffers", buffer.name), g.get()};
    PERIGEE_CHECK(write_attr_i32(gloc, "index", static_cast<int32_t>(b)));
    PERIGEE_CHECK(write_attr_u64(gloc, "size", buffer.data.size()));
    for (size_t v = 0; v < buffer.views.size(); ++v) {
      const View& view = buffer.views[v];
      const std::vector<hsize_t> dims(view.shape.begin(), view.shape.end());
      Hdf5Id ds;
      PERIGEE_CHECK(write_chunked(gloc, view.name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float), dims,
                                  buffer.data.data() + view.offset, options.chunk_bytes, &scratch, &ds));
      const Loc dloc{path, child(gloc.path, view.name), ds.get()};
      PERIGEE_CHECK(write_attr_u64(dloc, "offset", view.offset));
      PERIGEE_CHECK(write_attr_i32(dloc, "index", static_cast<int32_t>(v)));
      PERIGEE_CHECK(write_attr_u32(dloc, "crc32c", infos[b].crc32c[v]));
      PERIGEE_CHECK_HDF5(ds.reset(), "checkpoint '", path, "': ", dloc.path, ": closing the dataset");
    }
  }
  PERIGEE_CHECK_HDF5(buffers_group.reset(), "checkpoint '", path, "': closing /buffers");
  PERIGEE_CHECK(write_attr_u32(root, "manifest_crc32c", manifest));
  PERIGEE_CHECK_HDF5(file.reset(), "checkpoint '", path, "': closing the file");
  st.hdf5_seconds = seconds_since(t0);
  return Status::ok();
}

}  // namespace perigee::checkpoint
