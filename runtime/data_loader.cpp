// DataLoader: per-epoch permutations from our own PRNG (splitmix64-seeded xoshiro256**) and our own
// Fisher-Yates shuffle, so the batch sequence is identical on every platform and standard library.
#include "runtime/data_loader.hpp"

#include <algorithm>
#include <numeric>

#include "runtime/token_file.hpp"

namespace perigee::runtime {
namespace {

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// xoshiro256** (Blackman & Vigna), state filled from splitmix64 as its authors recommend.
class Xoshiro256 {
 public:
  Xoshiro256(uint64_t seed, uint64_t stream) {
    uint64_t sm = seed;
    const uint64_t a = splitmix64(&sm);
    uint64_t sm2 = stream ^ 0xD1B54A32D192ED03ull;
    const uint64_t b = splitmix64(&sm2);
    uint64_t mixed = a ^ rotl(b, 17);
    for (uint64_t& word : state_) word = splitmix64(&mixed);
  }

  uint64_t next() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, bound) without modulo bias: reject the low (2^64 mod bound) values.
  uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }

 private:
  uint64_t state_[4];
};

}  // namespace

Status DataLoader::open(const std::string& path, const DataLoaderOptions& options, DataLoader* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "DataLoader::open(", path, "): out is null");
  PERIGEE_REQUIRE(options.global_batch > 0, StatusCode::kInvalidArgument, "data loader for ", path,
                  ": global_batch must be positive, got ", options.global_batch);
  PERIGEE_REQUIRE(options.seq_len > 0, StatusCode::kInvalidArgument, "data loader for ", path,
                  ": seq_len must be positive, got ", options.seq_len);
  PERIGEE_REQUIRE(options.world_size > 0, StatusCode::kInvalidArgument, "data loader for ", path,
                  ": world_size must be positive, got ", options.world_size);
  PERIGEE_REQUIRE(options.rank >= 0 && options.rank < options.world_size, StatusCode::kInvalidArgument,
                  "data loader for ", path, ": rank ", options.rank, " is outside [0, ", options.world_size,
                  ")");
  PERIGEE_REQUIRE(options.global_batch % options.world_size == 0, StatusCode::kInvalidArgument,
                  "data loader for ", path, ": global batch ", options.global_batch,
                  " is not divisible by world size ", options.world_size);

  DataLoader loader;
  loader.options_ = options;
  TokenFileHeader& header = loader.header_;
  PERIGEE_CHECK(read_token_file(path, &loader.tokens_, &header));
  if (options.model_vocab > 0) {  // now, not when a batch first holds such a token (on one rank)
    const auto bad = std::find_if(loader.tokens_.begin(), loader.tokens_.end(),
                                  [&](uint16_t t) { return t >= options.model_vocab; });
    PERIGEE_REQUIRE(bad == loader.tokens_.end(), StatusCode::kInvalidArgument, "token file ", path,
                    " holds token ", *bad, " at position ", bad - loader.tokens_.begin(),
                    ", outside the model's vocabulary [0, ", options.model_vocab,
                    ") ([model] vocab_size; the file's tokenizer has ", header.vocab_size, " tokens)");
  }
  const uint64_t count = loader.tokens_.size();
  const uint64_t seq_len = static_cast<uint64_t>(options.seq_len);
  loader.num_samples_ = count > 0 ? (count - 1) / seq_len : 0;
  const uint64_t needed = static_cast<uint64_t>(options.global_batch) * seq_len + 1;
  PERIGEE_REQUIRE(loader.num_samples_ >= static_cast<uint64_t>(options.global_batch),
                  StatusCode::kInvalidArgument, "token file ", path, " is too small: it has ", count,
                  " tokens (", loader.num_samples_, " samples of seq_len ", seq_len,
                  " + 1), but one global batch of ", options.global_batch, " sequences needs ", needed,
                  " tokens");
  *out = std::move(loader);
  return Status::ok();
}

uint64_t DataLoader::memory_bytes(uint64_t count, int seq_len, bool shuffle) {
  const uint64_t samples = count > 0 && seq_len > 0 ? (count - 1) / static_cast<uint64_t>(seq_len) : 0;
  return count * sizeof(uint16_t) + (shuffle ? samples * sizeof(uint64_t) : 0);
}

uint64_t DataLoader::sample_index(uint64_t global_position) const {
  const uint64_t epoch = global_position / num_samples_;
  const uint64_t i = global_position % num_samples_;
  if (!options_.shuffle) return i;
  if (permutation_epoch_ != epoch || permutation_.size() != num_samples_) {
    permutation_.resize(num_samples_);
    std::iota(permutation_.begin(), permutation_.end(), uint64_t{0});
    Xoshiro256 rng(options_.seed, epoch);
    for (uint64_t k = num_samples_ - 1; k > 0; --k) {
      const uint64_t j = rng.below(k + 1);
      std::swap(permutation_[k], permutation_[j]);
    }
    permutation_epoch_ = epoch;
  }
  return permutation_[i];
}

void DataLoader::fill_sample(uint64_t sample, int32_t* inputs, int32_t* targets) const {
  const uint16_t* src = tokens_.data() + sample * static_cast<uint64_t>(options_.seq_len);
  std::copy(src, src + options_.seq_len, inputs);
  std::copy(src + 1, src + 1 + options_.seq_len, targets);
}

void DataLoader::fill_from(uint64_t first_position, int32_t* inputs, int32_t* targets) const {
  const uint64_t local = static_cast<uint64_t>(local_batch());
  const uint64_t begin = first_position + static_cast<uint64_t>(options_.rank) * local;
  const uint64_t stride = static_cast<uint64_t>(options_.seq_len);
  for (uint64_t k = 0; k < local; ++k) {
    fill_sample(sample_index(begin + k), inputs + k * stride, targets + k * stride);
  }
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  fill_from(cursor_.position, inputs, targets);
  cursor_.position += static_cast<uint64_t>(options_.global_batch);
}

void DataLoader::batch_at(uint64_t batch_index, int32_t* inputs, int32_t* targets) const {
  fill_from(batch_index * static_cast<uint64_t>(options_.global_batch), inputs, targets);
}

}  // namespace perigee::runtime
