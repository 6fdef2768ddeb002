// Byte-level tokenizer: token = byte value (vocab 256), no vocabulary file, lossless round trip.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace perigee::runtime {

inline constexpr int kByteVocabSize = 256;

std::vector<int32_t> encode_bytes(std::string_view text);
// Tokens outside [0, 256) are an error in callers; here they are replaced by '?'.
std::string decode_bytes(const std::vector<int32_t>& tokens);

}  // namespace perigee::runtime
