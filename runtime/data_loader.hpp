// DataLoader: rank-disjoint, seed-deterministic batches of (inputs, targets) from a token file.
// The token stream is cut into samples of seq_len + 1 tokens at stride seq_len
// (num_samples = (count - 1) / seq_len). Each epoch visits the samples in a permutation drawn
// from (seed, epoch) with our own PRNG (portable, not std::shuffle). Global step s uses the
// permuted samples [s * B, (s + 1) * B) of the infinite epoch sequence; rank r of W takes the
// contiguous slice [r * B/W, (r + 1) * B/W). So 1 rank with batch B sees exactly the samples that
// W ranks with B/W each see together, which is what data-parallel equivalence needs.
// The cursor (next global sample position) is all the state a checkpoint must save.
// next_batch reads the global positions [cursor, cursor + B) (a batch may span two epochs) and
// advances the cursor by B. The permutation cache makes const methods unsafe to call concurrently
// on one loader. Details: docs/data.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "runtime/token_file.hpp"

namespace perigee::runtime {

struct DataCursor {
  uint64_t position = 0;  // global sample position over the concatenated epochs
};

struct DataLoaderOptions {
  int global_batch = 16;  // B over all ranks
  int seq_len = 128;      // T
  int rank = 0;
  int world_size = 1;
  uint64_t seed = 1337;
  bool shuffle = true;  // false: samples in file order (validation)
  int model_vocab = 0;  // > 0: every token must be < this (the model's vocab_size), checked at open
};

class DataLoader {
 public:
  // Loads the token file. Errors: missing/corrupt file, too few tokens for one global batch,
  // global_batch not divisible by world_size, a token the model's vocabulary lacks.
  static Status open(const std::string& path, const DataLoaderOptions& options, DataLoader* out);
  // Host memory a loader of `count` tokens holds: the tokens as stored (2 bytes each) and, when it
  // shuffles, one epoch's sample permutation (8 bytes per sample of seq_len + 1 tokens).
  static uint64_t memory_bytes(uint64_t count, int seq_len, bool shuffle);

  int local_batch() const { return options_.global_batch / options_.world_size; }
  int seq_len() const { return options_.seq_len; }
  uint64_t num_samples() const { return num_samples_; }
  uint64_t num_tokens() const { return tokens_.size(); }
  // The token file's header (count, vocabulary, CRC-32 of the tokens): what identifies the data.
  const TokenFileHeader& file_header() const { return header_; }

  // Fills inputs/targets [local_batch * seq_len] for the next global batch and advances the cursor.
  void next_batch(int32_t* inputs, int32_t* targets);
  // Same, for the batch at an explicit global batch index (does not move the cursor).
  void batch_at(uint64_t batch_index, int32_t* inputs, int32_t* targets) const;

  DataCursor cursor() const { return cursor_; }
  // Epoch of the next sample (cursor position / num_samples); 0 before open.
  uint64_t epoch() const { return num_samples_ ? cursor_.position / num_samples_ : 0; }
  void set_cursor(const DataCursor& cursor) { cursor_ = cursor; }
  void reset() { cursor_ = DataCursor{}; }

 private:
  uint64_t sample_index(uint64_t global_position) const;  // permuted sample for a position
  void fill_sample(uint64_t sample, int32_t* inputs, int32_t* targets) const;
  // This rank's slice of the global batch whose first global position is first_position.
  void fill_from(uint64_t first_position, int32_t* inputs, int32_t* targets) const;

  DataLoaderOptions options_;
  std::vector<uint16_t> tokens_;  // as stored: 2 bytes a token (vocabularies up to 65,536)
  TokenFileHeader header_;
  uint64_t num_samples_ = 0;
  DataCursor cursor_;
  mutable std::vector<uint64_t> permutation_;  // for permutation_epoch_
  mutable uint64_t permutation_epoch_ = UINT64_MAX;
};

}  // namespace perigee::runtime
