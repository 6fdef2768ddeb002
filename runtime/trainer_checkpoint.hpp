// The trainer's state as a checkpoint: parameters and AdamW moments as three named flat buffers
// ("params", "adam_m", "adam_v", views = the model's ParameterTable), plus step, LR schedule, data
// cursors, model shape and resolved config. The checkpoint/ layer stays model-agnostic; this file
// is where the runtime composes the two.
#pragma once

#include <cstdint>
#include <vector>

#include "checkpoint/async_writer.hpp"
#include "checkpoint/snapshot.hpp"
#include "checkpoint/store.hpp"
#include "core/status.hpp"
#include "runtime/config.hpp"
#include "runtime/data_loader.hpp"
#include "runtime/fault_ladder.hpp"
#include "runtime/gpt_model.hpp"

namespace perigee::runtime {

inline constexpr const char* kParamsBuffer = "params";
inline constexpr const char* kAdamMBuffer = "adam_m";
inline constexpr const char* kAdamVBuffer = "adam_v";
// The fault ladder's window as two series (both absent while it is empty).
inline constexpr const char* kInvariantLossesSeries = "invariant_losses";
inline constexpr const char* kInvariantNormsSeries = "invariant_grad_norms";
// What identifies the training tokens: the token file's count, vocabulary and CRC-32 (exact in float64).
inline constexpr const char* kTrainDataSeries = "train_data";
// AdamW updates applied so far (its bias correction's count): fewer than the steps when the fault
// ladder skipped some. A file without it (older runs) counts every step.
inline constexpr const char* kAdamUpdatesSeries = "adam_updates";

// Whether the config writes checkpoints (given a folder): a step or time interval, or an eclipse policy.
inline bool schedules_checkpoints(const Config& config) {
  const CheckpointConfig& cc = config.checkpoint;
  return cc.every_steps > 0 || cc.every_seconds > 0.0 || config.orbit.eclipse != "off";
}

// The fp32 state a checkpoint holds for `parameters` parameters: the parameters, AdamW m and v.
inline constexpr uint64_t checkpoint_state_bytes(uint64_t parameters) {
  return 3 * sizeof(float) * parameters;
}
// A checkpoint file's size: the state plus the header and the HDF5 structure (under 64 KiB).
inline constexpr uint64_t checkpoint_file_bytes(uint64_t parameters) {
  return checkpoint_state_bytes(parameters) + (64 << 10);
}

// Metadata of the state after `step` completed steps; `train_data`: the training token file's header.
checkpoint::SnapshotMeta make_checkpoint_meta(const Config& config, const GptModel& model, int64_t step,
                                              int world_size, const DataCursor& cursor, double last_lr,
                                              const InvariantWindow& window,
                                              const TokenFileHeader& train_data, int64_t adam_updates);

// "" when the checkpoint's training tokens are those of `now` (or it does not record them: older
// files); else "<path> holds other tokens than ...: then ..., now ..." for a warning.
std::string train_data_change(const checkpoint::SnapshotMeta& meta, const TokenFileHeader& now,
                              const std::string& path);

// Live buffers of `model` (copied out through its backend when staged).
checkpoint::StateSource make_state_source(GptModel& model, checkpoint::SnapshotMeta meta);

// The store's options for [checkpoint]: retention, and the read-back verification of each new file
// (`verify`: "auto" verifies when keep_last is 1, since retention then removes the only other copy).
checkpoint::StoreOptions store_options(const CheckpointConfig& config);

// What a checkpoint must match to resume `model` (shape and buffer sizes; world size reported).
checkpoint::Expectation checkpoint_expectation(const GptModel& model, int world_size);

// Writes a loaded snapshot into the model; returns the step to continue with, the data cursor, the
// invariant window (empty from a file without it, e.g. format version 1) and the AdamW updates applied
// (the step from a file without them). Checks everything before it writes anything.
Status restore_checkpoint(const checkpoint::Snapshot& snapshot, GptModel& model, int64_t* step,
                          DataCursor* cursor, InvariantWindow* window, int64_t* adam_updates);

}  // namespace perigee::runtime
