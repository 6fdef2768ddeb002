// Token file: what perigee-data writes and the data loader reads.
// Layout (little-endian): 64-byte header, then `count` tokens as uint16.
//   offset 0  char[8]  magic "PRGTOK01"
//   offset 8  uint32   version (1)
//   offset 12 uint32   vocab_size
//   offset 16 uint64   count (tokens that follow)
//   offset 24 uint32   bytes_per_token (2)
//   offset 28 uint32   crc32 of the token bytes (IEEE, zlib's)
//   offset 32 ..63     reserved, zero
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::runtime {

inline constexpr char kTokenFileMagic[8] = {'P', 'R', 'G', 'T', 'O', 'K', '0', '1'};
inline constexpr uint32_t kTokenFileVersion = 1;
inline constexpr size_t kTokenFileHeaderBytes = 64;

struct TokenFileHeader {
  uint32_t version = 1;
  uint32_t vocab_size = 256;
  uint64_t count = 0;
  uint32_t token_crc32 = 0;  // of the token bytes, as stored in the header
};

// Writes `path` atomically: stage_token_file, then commit_token_file.
Status write_token_file(const std::string& path, const std::vector<int32_t>& tokens, uint32_t vocab_size);
// The two halves, for files that must change together (a train and a val split): the whole file is
// written and fsynced as <path>.tmp (removed again on failure), then renamed over `path` and the
// folder fsynced. discard_staged_token_file removes a staged <path>.tmp that will not be committed.
Status stage_token_file(const std::string& path, const std::vector<int32_t>& tokens, uint32_t vocab_size);
Status commit_token_file(const std::string& path);
void discard_staged_token_file(const std::string& path);

// Reads and verifies (magic, version, size, crc, every token < vocab_size). Errors name the path
// and what is wrong; a missing file says how to build it (scripts/build_data.sh / perigee-data).
// The uint16 form holds the tokens as stored (2 bytes each, the file's size in memory).
Status read_token_file(const std::string& path, std::vector<uint16_t>* tokens, TokenFileHeader* header);
Status read_token_file(const std::string& path, std::vector<int32_t>* tokens, TokenFileHeader* header);

// Reads and checks the header only (magic, version, vocab_size, and the file size against the
// count); the tokens and their CRC are not read. Errors as read_token_file's.
Status read_token_header(const std::string& path, TokenFileHeader* header);

// CRC-32 (IEEE 802.3 / zlib: reflected polynomial 0xEDB88320). Pass the previous result as `crc`
// to continue a running checksum; crc32("123456789") == 0xCBF43926.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace perigee::runtime
