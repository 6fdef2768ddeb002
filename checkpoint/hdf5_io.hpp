// Snapshot <-> one HDF5 file (format "perigee-checkpoint", version 2; docs/checkpoint.md shows the
// layout and what h5dump prints). Every tensor view is its own dataset under /buffers/<buffer>/,
// chunked with the Fletcher32 filter and carrying a CRC32C attribute; metadata lives under /meta
// and on the root; a root manifest CRC32C covers the format, all metadata, every view's name,
// offset and shape, and every tensor CRC. Reading verifies all of it and every error names the
// file, the object and what is wrong. These calls do no fsync (checkpoint/store.hpp commits).
// All HDF5 work is serialised by hdf5_mutex() (checkpoint/hdf5_check.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/snapshot.hpp"
#include "core/status.hpp"

namespace perigee::checkpoint {

inline constexpr char kFormatName[] = "perigee-checkpoint";
// Written: kFormatVersion. Read: every version from kOldestFormatVersion on (version 1 has no
// /meta/series; it reads as no series).
inline constexpr int32_t kFormatVersion = 2;
inline constexpr int32_t kOldestFormatVersion = 1;

struct WriteOptions {
  uint64_t chunk_bytes = 4ull << 20;  // target chunk size of the tensor datasets (HDF5 max: 4 GiB)
};

struct WriteStats {
  uint64_t data_bytes = 0;  // tensor bytes written
  double crc_seconds = 0.0;
  double hdf5_seconds = 0.0;  // create, write, close
};

// Per buffer: the layout and the stored CRC32C of each view (same order as views).
struct BufferInfo {
  std::string name;
  uint64_t size = 0;  // elements
  std::vector<View> views;
  std::vector<uint32_t> crc32c;
};

// Everything of a checkpoint file but the tensor data.
struct CheckpointHeader {
  int32_t format_version = 0;
  SnapshotMeta meta;
  std::vector<BufferInfo> buffers;
  uint32_t manifest_crc32c = 0;
  uint64_t file_bytes = 0;
  // HDF5's end of allocated space (0: unknown). A file longer than this has bytes after the HDF5 data
  // that no read looks at (appended to after it was written, or a copy that ran on).
  uint64_t data_bytes = 0;

  const BufferInfo* find_buffer(const std::string& name) const;
};

// CRC32C of the bytes of one view of a buffer (fp32 as stored in memory).
uint32_t view_crc32c(const Buffer& buffer, const View& view);

// The manifest digest: CRC32C over a canonical little-endian encoding of the format name and
// version, the metadata (the series from version 2 on), and per buffer (in order) its name, size
// and per view (in order) name, offset, shape and CRC32C. The byte layout is specified in
// docs/checkpoint.md.
uint32_t manifest_crc32c(int32_t format_version, const SnapshotMeta& meta,
                         const std::vector<BufferInfo>& buffers);

// Writes `snapshot` to `path` (created, or truncated if it exists). Validates it first.
Status write_snapshot(const std::string& path, const Snapshot& snapshot, const WriteOptions& options = {},
                      WriteStats* stats = nullptr);

// Reads the metadata and the view tables, verifying the format, the version, every required
// field and the manifest digest (no tensor data is read).
Status read_header(const std::string& path, CheckpointHeader* out);

// Reads and verifies everything: the header as above, then every tensor (HDF5 checks Fletcher32
// on each chunk; then its CRC32C). On success *out holds the snapshot (and *header, if given, the
// header). On failure *out is unspecified.
Status read_snapshot(const std::string& path, Snapshot* out, CheckpointHeader* header = nullptr);

}  // namespace perigee::checkpoint
