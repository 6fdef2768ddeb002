// Helpers shared by the HDF5 checkpoint writer (hdf5_write.cpp) and reader (hdf5_read.cpp): where an
// object lives for messages, the file access properties both open files with, and the error of a
// failed verification. Internal to perigee_checkpoint; every call with hdf5_mutex() held.
#pragma once

#include <string>
#include <utility>

#include "checkpoint/hdf5_check.hpp"
#include "core/status.hpp"

namespace perigee::checkpoint::detail {

// "checkpoint '<file>': <object>: <what>" as a kIoError (verification failures).
template <typename... Args>
Status corrupt(const std::string& file, const std::string& object, Args&&... what) {
  return make_error(StatusCode::kIoError, "checkpoint '", file, "': ", object, ": ",
                    std::forward<Args>(what)...);
}

// Where an object lives, for messages: file path and the object's path inside the file.
struct Loc {
  const std::string& file;
  std::string path;
  hid_t id;
};

inline std::string where(const Loc& loc) {
  return str_cat("checkpoint '", loc.file, "': ", loc.path);
}

inline std::string child(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

inline Hdf5Id make_fapl() {
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

}  // namespace perigee::checkpoint::detail
