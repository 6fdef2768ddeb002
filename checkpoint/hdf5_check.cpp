// HDF5 error handling: the library lock, silenced automatic printing, error stack as text.
#include "checkpoint/hdf5_check.hpp"

#include <vector>

namespace perigee::checkpoint {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

void hdf5_silence_errors() {
  // Per thread in thread-safe builds, global otherwise: set it on every entry (cheap).
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

namespace {

struct Frame {
  std::string func, desc, minor;
};

herr_t collect_frame(unsigned /*n*/, const H5E_error2_t* err, void* client) {
  Frame f;
  f.func = err->func_name ? err->func_name : "?";
  f.desc = (err->desc && *err->desc) ? err->desc : "(no description)";
  char minor[256] = {0};
  H5E_type_t type;
  if (H5Eget_msg(err->min_num, &type, minor, sizeof(minor)) > 0) f.minor = minor;
  static_cast<std::vector<Frame>*>(client)->push_back(std::move(f));
  return 0;
}

// One line of a frame's description. HDF5's file drivers write "file write failed: time = <ctime>\n,
// filename = '...', file descriptor = 3, errno = 28, error message = 'No space left on device', buf =
// ..." (several hundred characters); that becomes "file write failed: No space left on device (errno
// 28)", the file being named by the caller.
std::string short_desc(const std::string& desc) {
  const std::string message_key = "error message = '";
  const size_t message = desc.find(message_key);
  const size_t time = desc.find(": time = ");
  if (message != std::string::npos && time != std::string::npos) {
    const size_t from = message + message_key.size();
    std::string text = desc.substr(0, time) + ": " + desc.substr(from, desc.find('\'', from) - from);
    const size_t errno_at = desc.find("errno = ");
    if (errno_at != std::string::npos) {
      const size_t digits = errno_at + 8;
      text += " (errno " + desc.substr(digits, desc.find_first_not_of("0123456789", digits) - digits) + ")";
    }
    return text;
  }
  return desc.substr(0, desc.find('\n'));
}

}  // namespace

std::string hdf5_error_text() {
  std::vector<Frame> frames;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_frame, &frames);
  H5Eclear2(H5E_DEFAULT);
  if (frames.empty()) return "(HDF5 error stack empty)";
  // The innermost frame is the cause ("data error detected by Fletcher32 checksum"); the calls that
  // led there follow for the record, each in one line, the innermost by its function name only.
  const Frame& cause = frames.back();
  std::string text = short_desc(cause.desc) + " [HDF5: ";
  for (size_t i = 0; i + 1 < frames.size(); ++i)
    text += frames[i].func + ": " + short_desc(frames[i].desc) + " <- ";
  text += cause.func;
  if (!cause.minor.empty()) text += " (" + cause.minor + ")";
  return text + "]";
}

herr_t Hdf5Id::reset() {
  if (id_ < 0) return 0;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      return H5Fclose(id);
    case H5I_GROUP:
      return H5Gclose(id);
    case H5I_DATASET:
      return H5Dclose(id);
    case H5I_ATTR:
      return H5Aclose(id);
    case H5I_DATATYPE:
      return H5Tclose(id);
    case H5I_DATASPACE:
      return H5Sclose(id);
    case H5I_GENPROP_LST:
      return H5Pclose(id);
    default:
      return H5Idec_ref(id) < 0 ? -1 : 0;
  }
}

}  // namespace perigee::checkpoint
