// The name of a run whose [run] name is unset: run-<local time to the second>, made unique in its root
// folder. perigee-train's rank 0 and perigee-run (which names the run once for all its launches) both
// claim it by creating the folder, which only one process can do, so two jobs started in the same
// second get two folders ("run-20261124-160704", then "run-20261124-160704-2") instead of sharing
// checkpoints and metrics.
#pragma once

#include <string>

#include "core/status.hpp"

namespace perigee::runtime {

// Creates `root` (with its parents) and a new folder in it named after the local time `stamp`
// (seconds since the epoch), with "-2", "-3", ... appended while the name is taken; *name = the
// folder's name. kIoError naming the folder when it cannot be created.
Status claim_timestamped_run_dir(const std::string& root, long long stamp, std::string* name);

}  // namespace perigee::runtime
