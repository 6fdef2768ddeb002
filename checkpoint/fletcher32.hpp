// Fletcher32 exactly as HDF5's filter computes it (H5Z_FILTER_FLETCHER32: 16-bit big-endian
// words, sums folded mod 65535, the checksum stored little-endian after the chunk), fast enough to
// stay off the critical path: the writer writes filtered chunks directly (H5Dwrite_chunk), and
// HDF5's own filter still verifies every chunk on read.
#pragma once

#include <cstddef>
#include <cstdint>

namespace perigee::checkpoint {

// The value HDF5's Fletcher32 filter appends to a chunk of n bytes.
uint32_t hdf5_fletcher32(const void* data, size_t n);

}  // namespace perigee::checkpoint
