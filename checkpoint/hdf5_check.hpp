// HDF5 member of the check-macro family, and the rules every HDF5 call in perigee_checkpoint
// follows. Debian's HDF5 1.10.8 is the serial, non-thread-safe build: every use of the library
// happens with hdf5_mutex() held (one thread at a time), automatic error printing is switched off,
// and a failing call becomes a kHdf5Error Status that carries the HDF5 error stack as text.
#pragma once

#include <hdf5.h>

#include <mutex>
#include <string>

#include "core/status.hpp"

namespace perigee::checkpoint {

// The one lock around every HDF5 call in this library (recursive: helpers may nest).
std::recursive_mutex& hdf5_mutex();

// Switches off HDF5's automatic error printing (idempotent). Call with hdf5_mutex() held.
void hdf5_silence_errors();

// The current HDF5 error stack as one line, then clears it: the innermost cause first, then the
// calls outermost first, one line each ("data error detected by Fletcher32 checksum [HDF5: H5Dread:
// can't read data <- ... <- H5Z__filter_fletcher32 (Read failed)]"); a file driver's long report
// becomes "file write failed: No space left on device (errno 28)". "(HDF5 error stack empty)" when
// nothing was recorded.
std::string hdf5_error_text();

// Owns one HDF5 identifier and closes it with the matching H5?close (any kind, via H5Iget_type).
class Hdf5Id {
 public:
  Hdf5Id() = default;
  explicit Hdf5Id(hid_t id) : id_(id) {}
  ~Hdf5Id() { reset(); }
  Hdf5Id(const Hdf5Id&) = delete;
  Hdf5Id& operator=(const Hdf5Id&) = delete;
  Hdf5Id(Hdf5Id&& other) noexcept : id_(other.release()) {}
  Hdf5Id& operator=(Hdf5Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.release();
    }
    return *this;
  }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  hid_t release() {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  // Closes the identifier now; returns the close call's result (negative on failure).
  herr_t reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

}  // namespace perigee::checkpoint

// Evaluates an HDF5 call (herr_t or hid_t); a negative result returns a kHdf5Error Status made of
// the remaining arguments (what was being done, which file and object), ": ", and the HDF5 error
// stack text. Use as PERIGEE_CHECK_HDF5(id = H5Dopen2(...), "opening ", path, ":", name).
#define PERIGEE_CHECK_HDF5(expr, ...)                                                              \
  do {                                                                                             \
    if ((expr) < 0) {                                                                              \
      return std::move(::perigee::make_error(::perigee::StatusCode::kHdf5Error, __VA_ARGS__, ": ", \
                                             ::perigee::checkpoint::hdf5_error_text())             \
                           .add_trace(__FILE__, __LINE__));                                        \
    }                                                                                              \
  } while (0)
