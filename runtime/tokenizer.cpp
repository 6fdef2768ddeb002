// Byte-level tokenizer: each byte of the text is one token in [0, 256).
#include "runtime/tokenizer.hpp"

namespace perigee::runtime {

std::vector<int32_t> encode_bytes(std::string_view text) {
  std::vector<int32_t> tokens;
  tokens.reserve(text.size());
  for (char c : text) tokens.push_back(static_cast<int32_t>(static_cast<unsigned char>(c)));
  return tokens;
}

std::string decode_bytes(const std::vector<int32_t>& tokens) {
  std::string text;
  text.reserve(tokens.size());
  for (int32_t t : tokens) {
    text.push_back(t >= 0 && t < kByteVocabSize ? static_cast<char>(static_cast<unsigned char>(t)) : '?');
  }
  return text;
}

}  // namespace perigee::runtime
