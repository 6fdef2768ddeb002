// Snapshot: the in-memory content of one checkpoint, model-agnostic. Named flat fp32 buffers
// ("params", "adam_m", "adam_v", ...), each with a table of views (name, offset, shape) that tile
// it exactly, plus the state a bit-exact resume needs: step, world size, RNG states, per-rank data
// cursors, the learning-rate schedule, the model shape as named integers, the resolved config as
// JSON text and named float64 series (run state such as the fault ladder's window). checkpoint/hdf5_io.hpp
// maps a Snapshot to one HDF5 file (docs/checkpoint.md).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::checkpoint {

// One named tensor inside a flat buffer: elements [offset, offset + size()) in row-major order.
struct View {
  std::string name;            // HDF5 dataset name: non-empty, no '/', not "." or ".."
  uint64_t offset = 0;         // in elements, into the flat buffer
  std::vector<int64_t> shape;  // rank >= 1, every extent >= 1

  uint64_t size() const;
  bool operator==(const View&) const = default;
};

// A named flat buffer. The views, sorted by offset, must cover [0, data.size()) with no gap and no
// overlap, so that writing every view writes every element (the table order is kept as given).
struct Buffer {
  std::string name;  // HDF5 group name: same rules as View::name
  std::vector<View> views;
  std::vector<float> data;
};

// Learning-rate schedule state (the trainer's warmup + cosine schedule; `kind` names it).
struct LrScheduleState {
  std::string kind = "warmup_cosine";
  double base_lr = 0.0;       // peak learning rate
  double min_lr_ratio = 0.0;  // final lr = base_lr * min_lr_ratio
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double last_lr = 0.0;  // learning rate of the last completed step

  bool operator==(const LrScheduleState&) const = default;
};

// Everything but the tensor data.
struct SnapshotMeta {
  int64_t step = 0;        // completed optimizer steps (the resume continues with this step)
  int32_t world_size = 1;  // ranks of the run that wrote it
  // Named RNG states, each one or more 64-bit words (a SplitMix64 state is one word).
  std::map<std::string, std::vector<uint64_t>> rng_states;
  // data_cursors[rank] = that rank's data-loader cursor words; world_size rows of equal length >= 1.
  std::vector<std::vector<uint64_t>> data_cursors;
  LrScheduleState lr_schedule;
  // Model shape as named integers ("n_layer", "n_embd", ...); checked on resume.
  std::map<std::string, int64_t> model_shape;
  std::string config_json;  // the resolved config (no NUL bytes)
  // Named float64 series of run state a resume must carry on (format version 2; e.g. the fault
  // ladder's window of accepted losses and gradient norms), each one or more values.
  std::map<std::string, std::vector<double>> series;

  bool operator==(const SnapshotMeta&) const = default;
};

struct Snapshot {
  SnapshotMeta meta;
  std::vector<Buffer> buffers;

  const Buffer* find_buffer(const std::string& name) const;
  Buffer* find_buffer(const std::string& name);
  // Sum of the buffer sizes in bytes.
  uint64_t data_bytes() const;
};

// A buffer with a single 1-D view named `view_name` covering all of `data`.
Buffer make_flat_buffer(std::string name, std::vector<float> data, std::string view_name = "data");

// Checks the structural rules above (names, unique names, view tiling, cursor rows, world size).
// The error names the offending buffer or view and what is wrong.
Status validate_snapshot(const Snapshot& snapshot);
Status validate_meta(const SnapshotMeta& meta);
// Checks one buffer's name and views against a buffer of `size` elements (data may be empty).
Status validate_buffer_layout(const std::string& name, const std::vector<View>& views, uint64_t size);

// True when the metadata, the view tables and every float's bit pattern are equal (so NaN payloads
// and -0.0 count). On a difference, *why (if given) says where the first one is.
bool bit_equal(const Snapshot& a, const Snapshot& b, std::string* why = nullptr);

}  // namespace perigee::checkpoint
