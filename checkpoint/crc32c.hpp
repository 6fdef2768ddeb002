// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, as in iSCSI, ext4 and RFC 3720): the
// per-tensor and manifest digest of a checkpoint. The SSE4.2 crc32 instruction is used when the
// CPU has it, a slicing-by-8 table otherwise; both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace perigee::checkpoint {

// CRC32C of n bytes. Chaining: crc32c(b, nb, crc32c(a, na)) == crc32c of a followed by b.
uint32_t crc32c(const void* data, size_t n, uint32_t previous = 0);

// The table implementation (every CPU) and the hardware one (only when available; else it falls
// back to the table); exposed so tests check both against known vectors.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t previous = 0);
uint32_t crc32c_hardware(const void* data, size_t n, uint32_t previous = 0);
bool crc32c_hardware_available();

}  // namespace perigee::checkpoint
