// Reading a small input file whole (a config, a fault plan, a topology graph), with errors that say what
// is wrong with the path instead of exceptions or a hang: missing, a folder, a FIFO or another special
// file (never opened, so a FIFO without a writer cannot block), a symbolic-link loop or a name too long.
#pragma once

#include <string>

#include "core/status.hpp"

namespace perigee {

// *bytes = the whole file at `path`. `what` names the input in messages ("[fault] plan",
// "config file"). kNotFound when nothing is there, kInvalidArgument for a folder or a special file,
// kIoError when the path cannot be looked at or read (with the system's reason).
Status read_small_file(const std::string& path, const char* what, std::string* bytes);

}  // namespace perigee
