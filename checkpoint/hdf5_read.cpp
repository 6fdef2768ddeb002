// HDF5 checkpoint file, the verifying reader: read_header and read_snapshot (layout in
// docs/checkpoint.md).
#include "checkpoint/hdf5_io.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "checkpoint/hdf5_check.hpp"
#include "checkpoint/hdf5_io_internal.hpp"

namespace perigee::checkpoint {

namespace {

using detail::child;
using detail::corrupt;
using detail::Loc;
using detail::make_fapl;
using detail::where;

std::string hex32(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

Status require_attr(const Loc& loc, const char* name, Hdf5Id* attr) {
  const htri_t exists = H5Aexists(loc.id, name);
  PERIGEE_CHECK_HDF5(exists, where(loc), ": looking up attribute '", name, "'");
  if (exists == 0) return corrupt(loc.file, loc.path, "required attribute '", name, "' is missing");
  *attr = Hdf5Id(H5Aopen(loc.id, name, H5P_DEFAULT));
  PERIGEE_CHECK_HDF5(attr->get(), where(loc), ": opening attribute '", name, "'");
  return Status::ok();
}

// A corrupt header may claim any size: nothing is read into memory that claims more bytes than the
// file holds (which would end in bad_alloc, or wrap a size product, instead of this error).
Status require_within_file(const Loc& loc, const std::string& what, uint64_t elements,
                           uint64_t element_bytes) {
  hsize_t file_bytes = 0;
  {
    Hdf5Id file(H5Iget_file_id(loc.id));
    PERIGEE_CHECK_HDF5(file.get(), where(loc), ": finding the file of ", what);
    PERIGEE_CHECK_HDF5(H5Fget_filesize(file.get(), &file_bytes), where(loc), ": reading the file size");
  }
  if (element_bytes > 0 && elements > file_bytes / element_bytes)
    return corrupt(loc.file, loc.path, what, " claims ", elements, " elements of ", element_bytes,
                   " bytes, more than the file's ", file_bytes, " bytes");
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
  PERIGEE_CHECK(require_within_file(loc, what, static_cast<uint64_t>(n), sizeof(T)));
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
  PERIGEE_REQUIRE(size > 0, StatusCode::kHdf5Error, where(loc), ": reading the size of ", what, ": ",
                  hdf5_error_text());
  PERIGEE_CHECK(require_within_file(loc, what, size, 1));
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
  // The element count, saturating: a product past 2^64 is no smaller than the file either.
  uint64_t elements = 1;
  for (hsize_t d : *dims)
    elements = d != 0 && elements > UINT64_MAX / d ? UINT64_MAX : elements * static_cast<uint64_t>(d);
  return require_within_file(loc, "the dataset", elements, size);
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

Status read_meta(const Loc& root, int32_t format_version, SnapshotMeta* meta) {
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
  meta->series.clear();
  if (format_version >= 2) {  // series: one float64 array attribute per name
    Hdf5Id g;
    PERIGEE_CHECK(open_member(mloc, "series", H5I_GROUP, &g));
    const Loc loc{root.file, "/meta/series", g.get()};
    std::vector<std::string> names;
    PERIGEE_CHECK(list_attrs(loc, &names));
    for (const std::string& name : names)
      PERIGEE_CHECK(
          read_attr_values(loc, name.c_str(), H5T_FLOAT, H5T_NATIVE_DOUBLE, -1, &meta->series[name]));
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
  if (ec && ec != std::errc::no_such_file_or_directory)  // a link loop, a name too long, no permission
    return make_error(StatusCode::kIoError, "checkpoint '", path, "': ", ec.message());
  if (!std::filesystem::exists(status))
    return make_error(StatusCode::kNotFound, "checkpoint '", path, "': file not found");
  if (std::filesystem::is_directory(status))
    return make_error(StatusCode::kIoError, "checkpoint '", path, "': a folder, not a checkpoint file");
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
  haddr_t eoa = 0;
  header->data_bytes = H5Fget_eoa(file.get(), &eoa) >= 0 ? static_cast<uint64_t>(eoa) : 0;

  std::string format;
  PERIGEE_CHECK(read_attr_string(root, "format", &format));
  if (format != kFormatName)
    return corrupt(path, "/", "not a Perigee checkpoint (attribute 'format' is '", format, "', want '",
                   kFormatName, "')");
  PERIGEE_CHECK(read_attr_i32(root, "format_version", &header->format_version));
  // Another build's file, not a damaged one (kInvalidArgument, as a mismatch with the job): a resume
  // refuses a newer one rather than pass it over, which would delete it at the next commit.
  PERIGEE_REQUIRE(header->format_version >= kOldestFormatVersion && header->format_version <= kFormatVersion,
                  StatusCode::kInvalidArgument, "checkpoint '", path, "': format version ",
                  header->format_version, " is not supported (this build reads ", kOldestFormatVersion,
                  " to ", kFormatVersion,
                  header->format_version > kFormatVersion ? "; a newer Perigee wrote it" : "", ")");
  PERIGEE_CHECK(read_attr_u32(root, "manifest_crc32c", &header->manifest_crc32c));
  PERIGEE_CHECK(read_meta(root, header->format_version, &header->meta));
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
    // Before the view table: a size past the file (e.g. 2^62 floats) is corrupt, and its bytes would wrap.
    if (b.size > (header->file_bytes - total_bytes) / sizeof(float))
      return corrupt(path, child("/buffers", b.name), "the buffers claim more than the file's ",
                     header->file_bytes, " bytes (this one ", b.size, " floats, after ", total_bytes,
                     " bytes of the others)");
    if (Status s = validate_buffer_layout(b.name, b.views, b.size); !s)
      return corrupt(path, child("/buffers", b.name), "invalid view table: ", s.message());
    total_bytes += b.size * sizeof(float);
  }
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

// read_impl, with any exception (bad_alloc from a size no check foresaw) as the file's error.
Status read_guarded(const std::string& path, CheckpointHeader* header, Snapshot* snapshot) {
  try {
    return read_impl(path, header, snapshot);
  } catch (const std::exception& e) {
    return make_error(StatusCode::kIoError, "checkpoint '", path, "': reading failed: ", e.what());
  }
}

}  // namespace

Status read_header(const std::string& path, CheckpointHeader* out) {
  PERIGEE_CHECK(read_guarded(path, out, nullptr));
  return Status::ok();
}

Status read_snapshot(const std::string& path, Snapshot* out, CheckpointHeader* header) {
  CheckpointHeader local;
  PERIGEE_CHECK(read_guarded(path, header ? header : &local, out));
  return Status::ok();
}

}  // namespace perigee::checkpoint
