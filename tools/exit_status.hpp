// Exit statuses of perigee-train, which mpirun passes on and perigee-run's restart policy reads.
#pragma once

#include "core/status.hpp"

namespace perigee::tools {

// A setup or config error, reported once and agreed on by every rank: a relaunch would fail the same way.
inline constexpr int kSetupErrorStatus = 2;
// A rank failed during training (an I/O error, a timed-out collective...) and aborted the job.
inline constexpr int kTrainingErrorStatus = 3;
// The fault ladder gave up (StatusCode::kFaultPersists): a fault came back through every rollback.
inline constexpr int kFaultPersistsStatus = 4;

// perigee-train's exit status for an error returned by training.
inline int training_exit_status(const Status& s) {
  return s.code() == StatusCode::kFaultPersists ? kFaultPersistsStatus : kTrainingErrorStatus;
}

}  // namespace perigee::tools
