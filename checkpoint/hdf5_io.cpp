// HDF5 checkpoint file: writer and verifying reader (layout in docs/checkpoint.md).
#include "checkpoint/hdf5_io.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <mutex>
#include <sstream>

#include "checkpoint/crc32c.hpp"
#include "checkpoint/fletcher32.hpp"
#include "checkpoint/hdf5_check.hpp"

namespace perigee::checkpoint {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string hex32(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

// "checkpoint '<file>': <object>: <what>" as a kIoError (verification failures).
template <typename... Args>
Status corrupt(const std::string& file, const std::string& object, Args&&... what) {
  return make_error(StatusCode::kIoError, "checkpoint '", file, "': ", object, ": ",
                    std::forward<Args>(what)...);
}

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

// ------------------------------------------------------------------ HDF5 helpers (mutex held)

// Where an object lives, for messages: file path and the object's path inside the file.
struct Loc {
  const std::string& file;
  std::string path;
  hid_t id;
};

std::string where(const Loc& loc) {
  return str_cat("checkpoint '", loc.file, "': ", loc.path);
}

std::string child(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

Hdf5Id make_fapl() {
  Hdf5Id fapl(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl.valid()) return fapl;
  // v2 object headers and the 1.10 superblock: HDF5 checksums all file metadata, so a flipped
  // byte in a header or attribute fails the open instead of being parsed.
  if (H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0 ||
      H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0 ||
      // Files are immutable once committed and one process writes a folder: no locks needed
      // (and flock fails on some flight file systems).
      H5Pset_file_locking(fapl.get(), false, true) < 0) {
    fapl.reset();
    return Hdf5Id();
  }
  return fapl;
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

// --- reading

Status require_attr(const Loc& loc, const char* name, Hdf5Id* attr) {
  const htri_t exists = H5Aexists(loc.id, name);
  PERIGEE_CHECK_HDF5(exists, where(loc), ": looking up attribute '", name, "'");
  if (exists == 0) return corrupt(loc.file, loc.path, "required attribute '", name, "' is missing");
  *attr = Hdf5Id(H5Aopen(loc.id, name, H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(attr->get(), where(loc), ": opening attribute '", name, "'");
  return Status::ok();
}

// Checks an object's datatype: class, size in bytes and (for integers) signedness.
Status check_type(const Loc& loc, const std::string& what, hid_t type, H5T_class_t cls, size_t size,
                  bool is_signed) {
  const H5T_class_t got = H5Tget_class(type);
  PERIGEE_CHECK_HDF5(got, where(loc), ": reading the type class of ", what);
  const size_t got_size = H5Tget_size(type);
  bool ok = got == cls && got_size == size;
  if (ok && cls == H5T_INTEGER) ok = (H5Tget_sign(type) == H5T_SGN_2) == is_signed;
  if (!ok) {
    const char* want = cls == H5T_INTEGER ? (is_signed ? "signed integer" : "unsigned integer")
                       : cls == H5T_FLOAT ? "float"
                                          : "string";
    return corrupt(loc.file, loc.path, what, " has the wrong type (want a ", size, "-byte ", want, ")");
  }
  return Status::ok();
}

// Reads a numeric attribute of `count` elements (0 = a scalar) into out.
template <typename T>
Status read_attr_values(const Loc& loc, const char* name, H5T_class_t cls, hid_t mem_type, hssize_t count,
                        std::vector<T>* out) {
  Hdf5Id attr;
  PERIGEE_CHECK(require_attr(loc, name, &attr));
  const std::string what = str_cat("attribute '", name, "'");
  Hdf5Id type(H5Aget_type(attr.get()));
  PERIGEE_CHECK_HDF5(type.get(), where(loc), ": reading the type of ", what);
  PERIGEE_CHECK(check_type(loc, what, type.get(), cls, sizeof(T), std::is_signed_v<T>));
  Hdf5Id space(H5Aget_space(attr.get()));
  PERIGEE_CHECK_HDF5(space.get(), where(loc), ": reading the dataspace of ", what);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  PERIGEE_CHECK_HDF5(n, where(loc), ": counting the elements of ", what);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (count == 0) {
    if (n != 1 || rank != 0)
      return corrupt(loc.file, loc.path, what, " must be a scalar (has ", n, " elements)");
  } else if (rank != 1 || n < 1 || (count > 0 && n != count)) {
    return corrupt(loc.file, loc.path, what, " must be a 1-D array", count > 0 ? str_cat(" of ", count) : "",
                   " (has rank ", rank, ", ", n, " elements)");
  }
  out->resize(static_cast<size_t>(n));
  PERIGEE_CHECK_HDF5(H5Aread(attr.get(), mem_type, out->data()), where(loc), ": reading ", what);
  return Status::ok();
}

template <typename T>
Status read_attr_scalar(const Loc& loc, const char* name, H5T_class_t cls, hid_t mem_type, T* out) {
  std::vector<T> v;
  PERIGEE_CHECK(read_attr_values(loc, name, cls, mem_type, 0, &v));
  *out = v[0];
  return Status::ok();
}

Status read_attr_u32(const Loc& l, const char* n, uint32_t* v) {
  return read_attr_scalar(l, n, H5T_INTEGER, H5T_NATIVE_UINT32, v);
}
Status read_attr_i32(const Loc& l, const char* n, int32_t* v) {
  return read_attr_scalar(l, n, H5T_INTEGER, H5T_NATIVE_INT32, v);
}
Status read_attr_u64(const Loc& l, const char* n, uint64_t* v) {
  return read_attr_scalar(l, n, H5T_INTEGER, H5T_NATIVE_UINT64, v);
}
Status read_attr_i64(const Loc& l, const char* n, int64_t* v) {
  return read_attr_scalar(l, n, H5T_INTEGER, H5T_NATIVE_INT64, v);
}
Status read_attr_f64(const Loc& l, const char* n, double* v) {
  return read_attr_scalar(l, n, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

// Reads a fixed-length string (attribute or scalar dataset) of `type` via `read`.
template <typename ReadFn>
Status read_fixed_string(const Loc& loc, const std::string& what, hid_t type, ReadFn read, std::string* out) {
  const H5T_class_t cls = H5Tget_class(type);
  PERIGEE_CHECK_HDF5(cls, where(loc), ": reading the type class of ", what);
  const htri_t variable = H5Tis_variable_str(type);
  PERIGEE_CHECK_HDF5(variable, where(loc), ": reading the string kind of ", what);
  if (cls != H5T_STRING || variable)
    return corrupt(loc.file, loc.path, what, " must be a fixed-length string");
  const size_t size = H5Tget_size(type);
  std::string buffer(size, '\0');
  PERIGEE_CHECK_HDF5(read(buffer.data()), where(loc), ": reading ", what);
  buffer.resize(strnlen(buffer.data(), size));
  *out = std::move(buffer);
  return Status::ok();
}

Status read_attr_string(const Loc& loc, const char* name, std::string* out) {
  Hdf5Id attr;
  PERIGEE_CHECK(require_attr(loc, name, &attr));
  Hdf5Id type(H5Aget_type(attr.get()));
  PERIGEE_CHECK_HDF5(type.get(), where(loc), ": reading the type of attribute '", name, "'");
  Hdf5Id space(H5Aget_space(attr.get()));
  PERIGEE_CHECK_HDF5(space.get(), where(loc), ": reading the dataspace of attribute '", name, "'");
  if (H5Sget_simple_extent_npoints(space.get()) != 1)
    return corrupt(loc.file, loc.path, "attribute '", name, "' must be one string");
  return read_fixed_string(
      loc, str_cat("attribute '", name, "'"), type.get(),
      [&](char* buf) { return H5Aread(attr.get(), type.get(), buf); }, out);
}

herr_t collect_link_name(hid_t, const char* name, const H5L_info_t*, void* names) {
  static_cast<std::vector<std::string>*>(names)->push_back(name);
  return 0;
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* names) {
  static_cast<std::vector<std::string>*>(names)->push_back(name);
  return 0;
}

Status list_links(const Loc& loc, std::vector<std::string>* names) {
  names->clear();
  hsize_t idx = 0;
  PERIGEE_CHECK_HDF5(H5Literate(loc.id, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link_name, names),
                     where(loc), ": listing the members");
  return Status::ok();
}

Status list_attrs(const Loc& loc, std::vector<std::string>* names) {
  names->clear();
  hsize_t idx = 0;
  PERIGEE_CHECK_HDF5(H5Aiterate2(loc.id, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, names),
                     where(loc), ": listing the attributes");
  return Status::ok();
}

// Opens a required member (group or dataset, as `want`) of `parent`.
Status open_member(const Loc& parent, const std::string& name, H5I_type_t want, Hdf5Id* out) {
  const std::string path = child(parent.path, name);
  const htri_t exists = H5Lexists(parent.id, name.c_str(), H5P_DEFAULT);
  PERIGEE_CHECK_HDF5(exists, "checkpoint '", parent.file, "': looking up ", path);
  const char* kind = want == H5I_GROUP ? "group" : "dataset";
  if (exists == 0) return corrupt(parent.file, path, "required ", kind, " is missing");
  *out = Hdf5Id(H5Oopen(parent.id, name.c_str(), H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(out->get(), "checkpoint '", parent.file, "': opening ", path);
  if (H5Iget_type(out->get()) != want) return corrupt(parent.file, path, "is not a ", kind);
  return Status::ok();
}

// A dataset's shape (and a check of its element type).
Status dataset_shape(const Loc& loc, hid_t dataset, H5T_class_t cls, size_t size, bool is_signed,
                     std::vector<hsize_t>* dims) {
  Hdf5Id type(H5Dget_type(dataset));
  PERIGEE_CHECK_HDF5(type.get(), where(loc), ": reading the element type");
  PERIGEE_CHECK(check_type(loc, "the element type", type.get(), cls, size, is_signed));
  Hdf5Id space(H5Dget_space(dataset));
  PERIGEE_CHECK_HDF5(space.get(), where(loc), ": reading the dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  PERIGEE_CHECK_HDF5(rank, where(loc), ": reading the rank");
  if (rank < 1) return corrupt(loc.file, loc.path, "dataset must have rank >= 1");
  dims->assign(static_cast<size_t>(rank), 0);
  PERIGEE_CHECK_HDF5(H5Sget_simple_extent_dims(space.get(), dims->data(), nullptr), where(loc),
                     ": reading the extents");
  return Status::ok();
}

// The dataset must be chunked with the Fletcher32 filter.
Status require_fletcher32(const Loc& loc, hid_t dataset) {
  Hdf5Id dcpl(H5Dget_create_plist(dataset));
  PERIGEE_CHECK_HDF5(dcpl.get(), where(loc), ": reading the creation properties");
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return corrupt(loc.file, loc.path, "dataset is not chunked");
  const int n = H5Pget_nfilters(dcpl.get());
  PERIGEE_CHECK_HDF5(n, where(loc), ": counting the filters");
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0;
    size_t nvalues = 0;
    unsigned filter_config = 0;
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nvalues, nullptr, 0,
                                           nullptr, &filter_config);
    PERIGEE_CHECK_HDF5(id, where(loc), ": reading filter ", i);
    if (id == H5Z_FILTER_FLETCHER32) return Status::ok();
  }
  return corrupt(loc.file, loc.path, "dataset has no Fletcher32 filter");
}

Hdf5Id make_read_dxpl() {
  Hdf5Id dxpl(H5Pcreate(H5P_DATASET_XFER));
  if (dxpl.valid() && H5Pset_edc_check(dxpl.get(), H5Z_ENABLE_EDC) < 0) return Hdf5Id();
  return dxpl;
}

// --- the two halves of the reader

Status read_meta(const Loc& root, SnapshotMeta* meta) {
  PERIGEE_CHECK(read_attr_i64(root, "step", &meta->step));
  PERIGEE_CHECK(read_attr_i32(root, "world_size", &meta->world_size));
  Hdf5Id meta_group;
  PERIGEE_CHECK(open_member(root, "meta", H5I_GROUP, &meta_group));
  const Loc mloc{root.file, "/meta", meta_group.get()};

  {  // config_json: scalar fixed-length string dataset
    Hdf5Id ds;
    PERIGEE_CHECK(open_member(mloc, "config_json", H5I_DATASET, &ds));
    const Loc loc{root.file, "/meta/config_json", ds.get()};
    Hdf5Id type(H5Dget_type(ds.get()));
    PERIGEE_CHECK_HDF5(type.get(), where(loc), ": reading the type");
    PERIGEE_CHECK(read_fixed_string(
        loc, "the dataset", type.get(),
        [&](char* buf) { return H5Dread(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); },
        &meta->config_json));
  }
  {  // data_cursors: uint64 [ranks, words]
    Hdf5Id ds;
    PERIGEE_CHECK(open_member(mloc, "data_cursors", H5I_DATASET, &ds));
    const Loc loc{root.file, "/meta/data_cursors", ds.get()};
    std::vector<hsize_t> dims;
    PERIGEE_CHECK(dataset_shape(loc, ds.get(), H5T_INTEGER, 8, false, &dims));
    if (dims.size() != 2 || dims[0] < 1 || dims[1] < 1)
      return corrupt(root.file, loc.path, "must be a 2-D [ranks, words] array");
    PERIGEE_CHECK(require_fletcher32(loc, ds.get()));
    std::vector<uint64_t> flat(dims[0] * dims[1]);
    Hdf5Id dxpl = make_read_dxpl();
    PERIGEE_CHECK_HDF5(dxpl.get(), where(loc), ": creating the transfer properties");
    PERIGEE_CHECK_HDF5(H5Dread(ds.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, dxpl.get(), flat.data()),
                       where(loc), ": reading the data");
    meta->data_cursors.assign(dims[0], std::vector<uint64_t>(dims[1]));
    for (hsize_t r = 0; r < dims[0]; ++r)
      std::copy_n(flat.begin() + r * dims[1], dims[1], meta->data_cursors[r].begin());
  }
  {  // rng_states: one uint64 array attribute per generator
    Hdf5Id g;
    PERIGEE_CHECK(open_member(mloc, "rng_states", H5I_GROUP, &g));
    const Loc loc{root.file, "/meta/rng_states", g.get()};
    std::vector<std::string> names;
    PERIGEE_CHECK(list_attrs(loc, &names));
    meta->rng_states.clear();
    for (const std::string& name : names)
      PERIGEE_CHECK(
          read_attr_values(loc, name.c_str(), H5T_INTEGER, H5T_NATIVE_UINT64, -1, &meta->rng_states[name]));
  }
  {  // model_shape: one int64 scalar attribute per key
    Hdf5Id g;
    PERIGEE_CHECK(open_member(mloc, "model_shape", H5I_GROUP, &g));
    const Loc loc{root.file, "/meta/model_shape", g.get()};
    std::vector<std::string> names;
    PERIGEE_CHECK(list_attrs(loc, &names));
    meta->model_shape.clear();
    for (const std::string& name : names)
      PERIGEE_CHECK(read_attr_i64(loc, name.c_str(), &meta->model_shape[name]));
  }
  {  // lr_schedule
    Hdf5Id g;
    PERIGEE_CHECK(open_member(mloc, "lr_schedule", H5I_GROUP, &g));
    const Loc loc{root.file, "/meta/lr_schedule", g.get()};
    LrScheduleState& s = meta->lr_schedule;
    PERIGEE_CHECK(read_attr_string(loc, "kind", &s.kind));
    PERIGEE_CHECK(read_attr_f64(loc, "base_lr", &s.base_lr));
    PERIGEE_CHECK(read_attr_f64(loc, "min_lr_ratio", &s.min_lr_ratio));
    PERIGEE_CHECK(read_attr_i64(loc, "warmup_steps", &s.warmup_steps));
    PERIGEE_CHECK(read_attr_i64(loc, "total_steps", &s.total_steps));
    PERIGEE_CHECK(read_attr_f64(loc, "last_lr", &s.last_lr));
  }
  return Status::ok();
}

// Checks that indices are a permutation of 0..n-1 and returns the order (position -> member).
Status order_by_index(const std::string& file, const std::string& object, const std::vector<int32_t>& index,
                      std::vector<size_t>* order) {
  order->assign(index.size(), SIZE_MAX);
  for (size_t i = 0; i < index.size(); ++i) {
    const int32_t k = index[i];
    if (k < 0 || static_cast<size_t>(k) >= index.size() || (*order)[k] != SIZE_MAX)
      return corrupt(file, object, "member 'index' attributes are not a permutation of 0..",
                     index.size() - 1);
    (*order)[k] = i;
  }
  return Status::ok();
}

Status read_buffers(const Loc& root, std::vector<BufferInfo>* buffers) {
  Hdf5Id bgroup;
  PERIGEE_CHECK(open_member(root, "buffers", H5I_GROUP, &bgroup));
  const Loc bloc{root.file, "/buffers", bgroup.get()};
  std::vector<std::string> names;
  PERIGEE_CHECK(list_links(bloc, &names));
  if (names.empty()) return corrupt(root.file, "/buffers", "holds no buffer");
  std::vector<BufferInfo> unordered(names.size());
  std::vector<int32_t> buffer_index(names.size());
  for (size_t b = 0; b < names.size(); ++b) {
    BufferInfo& info = unordered[b];
    info.name = names[b];
    Hdf5Id g;
    PERIGEE_CHECK(open_member(bloc, info.name, H5I_GROUP, &g));
    const Loc gloc{root.file, child("/buffers", info.name), g.get()};
    PERIGEE_CHECK(read_attr_i32(gloc, "index", &buffer_index[b]));
    PERIGEE_CHECK(read_attr_u64(gloc, "size", &info.size));
    std::vector<std::string> view_names;
    PERIGEE_CHECK(list_links(gloc, &view_names));
    std::vector<View> views(view_names.size());
    std::vector<uint32_t> crcs(view_names.size());
    std::vector<int32_t> view_index(view_names.size());
    for (size_t v = 0; v < view_names.size(); ++v) {
      Hdf5Id ds;
      PERIGEE_CHECK(open_member(gloc, view_names[v], H5I_DATASET, &ds));
      const Loc dloc{root.file, child(gloc.path, view_names[v]), ds.get()};
      std::vector<hsize_t> dims;
      PERIGEE_CHECK(dataset_shape(dloc, ds.get(), H5T_FLOAT, 4, true, &dims));
      PERIGEE_CHECK(require_fletcher32(dloc, ds.get()));
      views[v].name = view_names[v];
      views[v].shape.assign(dims.begin(), dims.end());
      PERIGEE_CHECK(read_attr_u64(dloc, "offset", &views[v].offset));
      PERIGEE_CHECK(read_attr_i32(dloc, "index", &view_index[v]));
      PERIGEE_CHECK(read_attr_u32(dloc, "crc32c", &crcs[v]));
    }
    std::vector<size_t> order;
    PERIGEE_CHECK(order_by_index(root.file, gloc.path, view_index, &order));
    for (size_t k : order) {
      info.views.push_back(std::move(views[k]));
      info.crc32c.push_back(crcs[k]);
    }
  }
  std::vector<size_t> order;
  PERIGEE_CHECK(order_by_index(root.file, "/buffers", buffer_index, &order));
  buffers->clear();
  for (size_t k : order) buffers->push_back(std::move(unordered[k]));
  return Status::ok();
}

Status read_impl(const std::string& path, CheckpointHeader* header, Snapshot* snapshot) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    return make_error(StatusCode::kNotFound, "checkpoint '", path, "': file not found");
  if (!std::filesystem::is_regular_file(status))
    return make_error(StatusCode::kIoError, "checkpoint '", path, "': not a regular file");
  header->file_bytes = std::filesystem::file_size(path, ec);
  if (ec) return make_error(StatusCode::kIoError, "checkpoint '", path, "': cannot stat: ", ec.message());
  if (header->file_bytes == 0)
    return make_error(StatusCode::kIoError, "checkpoint '", path, "': file is empty");

  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  hdf5_silence_errors();
  Hdf5Id fapl = make_fapl();
  PERIGEE_CHECK_HDF5(fapl.get(), "checkpoint '", path, "': creating the file access properties");
  Hdf5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  PERIGEE_CHECK_HDF5(file.get(), "checkpoint '", path,
                     "': cannot open as HDF5 (truncated, not an HDF5 file, or corrupt file metadata)");
  const Loc root{path, "/", file.get()};

  std::string format;
  PERIGEE_CHECK(read_attr_string(root, "format", &format));
  if (format != kFormatName)
    return corrupt(path, "/", "not a Perigee checkpoint (attribute 'format' is '", format, "', want '",
                   kFormatName, "')");
  PERIGEE_CHECK(read_attr_i32(root, "format_version", &header->format_version));
  if (header->format_version != kFormatVersion)
    return corrupt(path, "/", "format version ", header->format_version,
                   " is not supported (this build reads ", kFormatVersion, ")");
  PERIGEE_CHECK(read_attr_u32(root, "manifest_crc32c", &header->manifest_crc32c));
  PERIGEE_CHECK(read_meta(root, &header->meta));
  PERIGEE_CHECK(read_buffers(root, &header->buffers));

  const uint32_t manifest = manifest_crc32c(header->format_version, header->meta, header->buffers);
  if (manifest != header->manifest_crc32c)
    return corrupt(path, "/", "manifest CRC32C mismatch (stored ", hex32(header->manifest_crc32c),
                   ", computed ", hex32(manifest),
                   "): metadata, the view table or a tensor CRC attribute was altered");
  if (Status s = validate_meta(header->meta); !s)
    return corrupt(path, "/meta", "invalid metadata: ", s.message());
  uint64_t total_bytes = 0;
  for (const BufferInfo& b : header->buffers) {
    if (Status s = validate_buffer_layout(b.name, b.views, b.size); !s)
      return corrupt(path, child("/buffers", b.name), "invalid view table: ", s.message());
    total_bytes += b.size * sizeof(float);
  }
  if (total_bytes > header->file_bytes)
    return corrupt(path, "/buffers", "buffers claim ", total_bytes, " bytes but the file holds only ",
                   header->file_bytes);
  if (!snapshot) return Status::ok();

  // Tensor data: HDF5 verifies each chunk's Fletcher32 while reading; then the CRC32C per view.
  snapshot->meta = header->meta;
  snapshot->buffers.clear();
  Hdf5Id dxpl = make_read_dxpl();
  PERIGEE_CHECK_HDF5(dxpl.get(), "checkpoint '", path, "': creating the transfer properties");
  for (const BufferInfo& info : header->buffers) {
    Buffer& buffer = snapshot->buffers.emplace_back();
    buffer.name = info.name;
    buffer.views = info.views;
    buffer.data.resize(info.size);
    for (size_t v = 0; v < info.views.size(); ++v) {
      const View& view = info.views[v];
      const std::string object = str_cat("/buffers/", info.name, "/", view.name);
      Hdf5Id ds(H5Dopen2(file.get(), object.c_str(), H5P_DEFAULT));
      PERIGEE_CHECK_HDF5(ds.get(), "checkpoint '", path, "': ", object, ": opening the dataset");
      PERIGEE_CHECK_HDF5(
          H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, dxpl.get(), buffer.data.data() + view.offset),
          "checkpoint '", path, "': ", object, ": reading the data failed");
      const uint32_t crc = view_crc32c(buffer, view);
      if (crc != info.crc32c[v])
        return corrupt(path, object, "CRC32C mismatch (stored ", hex32(info.crc32c[v]), ", computed ",
                       hex32(crc), "): the tensor data differs from what was written");
    }
  }
  return Status::ok();
}

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

Status read_header(const std::string& path, CheckpointHeader* out) {
  PERIGEE_CHECK(read_impl(path, out, nullptr));
  return Status::ok();
}

Status read_snapshot(const std::string& path, Snapshot* out, CheckpointHeader* header) {
  CheckpointHeader local;
  PERIGEE_CHECK(read_impl(path, header ? header : &local, out));
  return Status::ok();
}

}  // namespace perigee::checkpoint
