// Data pipeline tests: tokenizer, token file format and corruption detection, DataLoader sampling /
// sharding / cursor semantics (the corpus builder behind perigee-data: test_corpus.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/data_loader.hpp"
#include "runtime/token_file.hpp"
#include "runtime/tokenizer.hpp"
#include "tests/runtime/data_test_util.hpp"

namespace perigee::runtime {
namespace {

namespace fs = std::filesystem;

using testing_data::DataTest;

// ---- tokenizer ----

TEST(Tokenizer, RoundTripsEveryByteIncludingZeroAndHighBytes) {
  std::string text;
  for (int b = 0; b < 256; ++b) text.push_back(static_cast<char>(b));
  text += "h\xc3\xa9llo\n";  // UTF-8 bytes >= 128
  const std::vector<int32_t> tokens = encode_bytes(text);
  ASSERT_EQ(tokens.size(), text.size());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tokens[b], b);
  EXPECT_EQ(tokens[257], 0xc3);
  for (int32_t t : tokens) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, kByteVocabSize);
  }
  EXPECT_EQ(decode_bytes(tokens), text);
  EXPECT_EQ(decode_bytes({72, -1, 256, 105}), "H??i");
  EXPECT_TRUE(encode_bytes("").empty());
}

// ---- token file ----

TEST(Crc32, MatchesZlibCheckValueAndContinues) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32(s.data(), s.size()), 0xCBF43926u);
  EXPECT_EQ(crc32(nullptr, 0), 0u);
  const uint32_t part = crc32(s.data(), 4);
  EXPECT_EQ(crc32(s.data() + 4, s.size() - 4, part), 0xCBF43926u);
}

TEST_F(DataTest, TokenFileRoundTripAndLayout) {
  std::vector<int32_t> tokens = encode_bytes(std::string("hello\0world\xff", 12));
  const std::string p = path("a.bin");
  ASSERT_TRUE(write_token_file(p, tokens, 256).is_ok());
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  std::vector<int32_t> back;
  TokenFileHeader header;
  Status st = read_token_file(p, &back, &header);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(back, tokens);
  EXPECT_EQ(header.version, 1u);
  EXPECT_EQ(header.vocab_size, 256u);
  EXPECT_EQ(header.count, tokens.size());

  const std::vector<uint8_t> bytes = read_bytes(p);
  ASSERT_EQ(bytes.size(), 64 + 2 * tokens.size());
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "PRGTOK01");
  EXPECT_EQ(bytes[8], 1);  // version, little-endian
  EXPECT_EQ(bytes[12] | bytes[13] << 8, 256);
  EXPECT_EQ(bytes[16], tokens.size());  // count
  EXPECT_EQ(bytes[24], 2);              // bytes per token
  for (int i = 32; i < 64; ++i) EXPECT_EQ(bytes[i], 0) << i;
  EXPECT_EQ(bytes[64], 'h');
  EXPECT_EQ(bytes[65], 0);
  const uint32_t crc = bytes[28] | bytes[29] << 8 | bytes[30] << 16 | static_cast<uint32_t>(bytes[31]) << 24;
  EXPECT_EQ(crc, crc32(bytes.data() + 64, bytes.size() - 64));

  // Wide vocab, overwrite of an existing file, and an empty file.
  std::vector<int32_t> wide = {0, 1, 255, 256, 65535};
  ASSERT_TRUE(write_token_file(p, wide, 65536).is_ok());
  ASSERT_TRUE(read_token_file(p, &back, &header).is_ok());
  EXPECT_EQ(back, wide);
  EXPECT_EQ(header.vocab_size, 65536u);
  std::vector<uint16_t> stored;  // the loader's form: the same tokens, 2 bytes each
  ASSERT_TRUE(read_token_file(p, &stored, nullptr).is_ok());
  EXPECT_EQ(stored, std::vector<uint16_t>(wide.begin(), wide.end()));
  ASSERT_TRUE(write_token_file(p, {}, 256).is_ok());
  ASSERT_TRUE(read_token_file(p, &back, nullptr).is_ok());
  EXPECT_TRUE(back.empty());
}

TEST_F(DataTest, TokenFileWriteRejectsBadTokens) {
  const std::string p = path("bad.bin");
  Status st = write_token_file(p, {1, 256}, 256);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(p), std::string::npos);
  EXPECT_FALSE(write_token_file(p, {-1}, 256).is_ok());
  EXPECT_FALSE(write_token_file(p, {1}, 70000).is_ok());
  EXPECT_FALSE(fs::exists(p));
  Status bad_dir = write_token_file(path("no/such/folder/x.bin"), {1}, 256);
  EXPECT_EQ(bad_dir.code(), StatusCode::kIoError);
}

class TokenFileCorruption : public DataTest {
 protected:
  // Writes a good file, lets `corrupt` edit its bytes, reads it back and returns the error.
  template <typename Fn>
  Status corrupt_and_read(Fn corrupt, std::vector<int32_t> tokens = {10, 20, 30, 40, 50},
                          uint32_t vocab = 256) {
    path_ = path("corrupt.bin");
    EXPECT_TRUE(write_token_file(path_, tokens, vocab).is_ok());
    std::vector<uint8_t> bytes = read_bytes(path_);
    corrupt(bytes);
    write_bytes(path_, bytes);
    std::vector<int32_t> back;
    return read_token_file(path_, &back, nullptr);
  }
  void expect_error(const Status& st, const std::string& what) {
    EXPECT_EQ(st.code(), StatusCode::kIoError) << st.to_string();
    EXPECT_NE(st.message().find(path_), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
  }
  std::string path_;
};

TEST_F(TokenFileCorruption, BadMagic) {
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b[3] = 'X'; }), "bad magic");
}

TEST_F(TokenFileCorruption, WrongVersion) {
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b[8] = 2; }), "version 2");
}

TEST_F(TokenFileCorruption, TruncatedBody) {
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b.pop_back(); }), "size mismatch");
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b.resize(b.size() - 2); }), "truncated");
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b.push_back(0); }), "trailing data");
}

TEST_F(TokenFileCorruption, TruncatedHeader) {
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b.resize(20); }), "truncated");
}

TEST_F(TokenFileCorruption, FlippedTokenByteFailsCrc) {
  expect_error(corrupt_and_read([](std::vector<uint8_t>& b) { b[64 + 4] ^= 0x01; }), "CRC mismatch");
}

TEST_F(TokenFileCorruption, TokenOutOfVocab) {
  // Written with vocab 512, then the header is edited to claim 256 (the CRC covers the tokens only).
  Status st = corrupt_and_read([](std::vector<uint8_t>& b) { b[12] = 0x00, b[13] = 0x01; }, {1, 300, 2}, 512);
  expect_error(st, "token 300 at index 1 is >= vocab_size 256");
}

TEST_F(DataTest, MissingFileSaysHowToBuildIt) {
  std::vector<int32_t> tokens;
  const std::string p = path("fortunes_train.bin");
  Status st = read_token_file(p, &tokens, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find(p), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("scripts/build_data.sh"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("perigee-data --fortunes --out " + path("fortunes")), std::string::npos)
      << st.message();

  Status other = read_token_file(path("x.bin"), &tokens, nullptr);
  EXPECT_EQ(other.code(), StatusCode::kNotFound);
  EXPECT_NE(other.message().find(path("x.bin")), std::string::npos);
  EXPECT_NE(other.message().find("perigee-data"), std::string::npos);
}

// ---- data loader ----

struct Batch {
  std::vector<int32_t> inputs, targets;
  bool operator==(const Batch&) const = default;
};

Batch next(DataLoader& loader) {
  Batch b;
  b.inputs.resize(static_cast<size_t>(loader.local_batch()) * loader.seq_len());
  b.targets.resize(b.inputs.size());
  loader.next_batch(b.inputs.data(), b.targets.data());
  return b;
}

Batch at(const DataLoader& loader, uint64_t index) {
  Batch b;
  b.inputs.resize(static_cast<size_t>(loader.local_batch()) * loader.seq_len());
  b.targets.resize(b.inputs.size());
  loader.batch_at(index, b.inputs.data(), b.targets.data());
  return b;
}

// Sample ids of a batch read from an index file (token i == i).
std::vector<int64_t> samples_of(const Batch& b, int seq_len) {
  std::vector<int64_t> ids;
  for (size_t k = 0; k < b.inputs.size(); k += seq_len) ids.push_back(b.inputs[k] / seq_len);
  return ids;
}

DataLoader open_or_die(const std::string& p, const DataLoaderOptions& o) {
  DataLoader loader;
  Status st = DataLoader::open(p, o, &loader);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return loader;
}

TEST_F(DataTest, LoaderTargetsAreInputsShiftedByOne) {
  const int T = 8;
  const std::string p = make_index_file("d.bin", 20 * T + 1);
  DataLoader loader = open_or_die(p, {.global_batch = 4, .seq_len = T, .seed = 7});
  EXPECT_EQ(loader.num_samples(), 20u);
  EXPECT_EQ(loader.num_tokens(), 20u * T + 1);
  for (int step = 0; step < 6; ++step) {
    Batch b = next(loader);
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(b.inputs[k * T] % T, 0) << "samples start at multiples of seq_len";
      for (int t = 0; t < T; ++t) {
        EXPECT_EQ(b.inputs[k * T + t], b.inputs[k * T] + t);
        EXPECT_EQ(b.targets[k * T + t], b.inputs[k * T + t] + 1);
      }
    }
  }
}

TEST_F(DataTest, LoaderIsDeterministicPerSeed) {
  const std::string p = make_index_file("d.bin", 64 * 4 + 1);
  DataLoaderOptions o{.global_batch = 8, .seq_len = 4, .seed = 1234};
  DataLoader a = open_or_die(p, o);
  DataLoader b = open_or_die(p, o);
  o.seed = 1235;
  DataLoader c = open_or_die(p, o);
  bool any_difference = false;
  for (int step = 0; step < 20; ++step) {
    Batch ba = next(a), bb = next(b), bc = next(c);
    EXPECT_EQ(ba, bb) << "step " << step;
    any_difference |= !(ba == bc);
  }
  EXPECT_TRUE(any_difference) << "seeds 1234 and 1235 gave the same 20 batches";
}

TEST_F(DataTest, LoaderVisitsEverySampleOncePerEpochInADifferentOrder) {
  const int T = 3, N = 24, B = 8;
  const std::string p = make_index_file("d.bin", N * T + 2);  // one spare token: still N samples
  DataLoader loader = open_or_die(p, {.global_batch = B, .seq_len = T, .seed = 99});
  ASSERT_EQ(loader.num_samples(), static_cast<uint64_t>(N));
  std::vector<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(loader.epoch(), static_cast<uint64_t>(epoch));
    std::vector<int64_t> order;
    for (int s = 0; s < N / B; ++s) {
      std::vector<int64_t> ids = samples_of(next(loader), T);
      order.insert(order.end(), ids.begin(), ids.end());
    }
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < N; ++i) ASSERT_EQ(sorted[i], i) << "epoch " << epoch;
    orders.push_back(order);
  }
  std::vector<int64_t> identity(N);
  for (int i = 0; i < N; ++i) identity[i] = i;
  EXPECT_NE(orders[0], identity);
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
}

TEST_F(DataTest, LoaderPermutationsAreUniform) {
  // 4 samples, batch 4: global batch e is epoch e's whole permutation. An unbiased Fisher-Yates
  // reaches all 24 orders equally often; a Sattolo or off-by-one shuffle misses orders, and the naive
  // "swap with any position" shuffle draws them 8 to 15 times in 256, not 10.7 (it maps 256 equally
  // likely paths onto 24 orders). Pearson's chi-square over 24,000 epochs (23 degrees of freedom) must
  // stay under 49.7, the 99.9 % point for an unbiased shuffle; the naive one expects 715 + 23.
  const int T = 2, N = 4;
  const std::string p = make_index_file("d.bin", N * T + 1);
  DataLoader loader = open_or_die(p, {.global_batch = N, .seq_len = T, .seed = 2024});
  std::map<std::vector<int64_t>, int> counts;
  const int epochs = 24000;
  for (int e = 0; e < epochs; ++e) ++counts[samples_of(at(loader, e), T)];
  EXPECT_EQ(counts.size(), 24u);
  const double expected = epochs / 24.0;
  double chi2 = 0.0;
  for (const auto& [order, n] : counts) chi2 += (n - expected) * (n - expected) / expected;
  EXPECT_LT(chi2, 49.7) << "the orders are not equally likely";
}

TEST_F(DataTest, LoaderBatchesSpanEpochBoundaries) {
  const int T = 2, N = 10, B = 4;
  const std::string p = make_index_file("d.bin", N * T + 1);
  // Reference order of positions 0..29 from a batch-1 loader (same seed, same permutations).
  DataLoader ref = open_or_die(p, {.global_batch = 1, .seq_len = T, .seed = 5});
  std::vector<int64_t> expected;
  for (int pos = 0; pos < 3 * N; ++pos) expected.push_back(samples_of(next(ref), T)[0]);

  DataLoader loader = open_or_die(p, {.global_batch = B, .seq_len = T, .seed = 5});
  std::vector<int64_t> got;
  for (int s = 0; s < 7; ++s) {  // 28 positions: batches 2 and 4 straddle epochs 0|1 and 1|2
    std::vector<int64_t> ids = samples_of(next(loader), T);
    got.insert(got.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(got, std::vector<int64_t>(expected.begin(), expected.begin() + 28));
  for (int e = 0; e < 2; ++e) {
    std::set<int64_t> epoch(expected.begin() + e * N, expected.begin() + (e + 1) * N);
    EXPECT_EQ(epoch.size(), static_cast<size_t>(N)) << "epoch " << e;
  }
  // Random access that hops between epochs (and so evicts the permutation cache) stays correct.
  DataLoader fresh = open_or_die(p, {.global_batch = B, .seq_len = T, .seed = 5});
  Batch b2 = at(fresh, 2), b6 = at(fresh, 6), b0 = at(fresh, 0);
  EXPECT_EQ(samples_of(b2, T), std::vector<int64_t>(expected.begin() + 8, expected.begin() + 12));
  EXPECT_EQ(samples_of(b6, T), std::vector<int64_t>(expected.begin() + 24, expected.begin() + 28));
  EXPECT_EQ(samples_of(b0, T), std::vector<int64_t>(expected.begin(), expected.begin() + 4));
  EXPECT_EQ(fresh.cursor().position, 0u) << "batch_at must not move the cursor";
}

TEST_F(DataTest, LoaderRankSlicesPartitionTheGlobalBatch) {
  const int T = 4, B = 8;
  const std::string p = make_index_file("d.bin", 30 * T + 1);  // 30 samples: batches span epochs
  DataLoader single = open_or_die(p, {.global_batch = B, .seq_len = T, .seed = 42});
  std::vector<Batch> reference;
  for (int s = 0; s < 9; ++s) reference.push_back(next(single));
  for (int W : {1, 2, 4}) {
    std::vector<DataLoader> ranks;
    for (int r = 0; r < W; ++r) {
      ranks.push_back(
          open_or_die(p, {.global_batch = B, .seq_len = T, .rank = r, .world_size = W, .seed = 42}));
      EXPECT_EQ(ranks.back().local_batch(), B / W);
    }
    for (int s = 0; s < 9; ++s) {
      Batch joined;
      std::set<int64_t> seen;
      for (int r = 0; r < W; ++r) {
        Batch b = next(ranks[r]);
        // A batch that straddles an epoch may repeat a sample (once per epoch); else all distinct.
        const bool one_epoch = (s * B) / 30 == (s * B + B - 1) / 30;
        for (int64_t id : samples_of(b, T)) {
          EXPECT_TRUE(seen.insert(id).second || !one_epoch) << "W=" << W << " step " << s;
        }
        joined.inputs.insert(joined.inputs.end(), b.inputs.begin(), b.inputs.end());
        joined.targets.insert(joined.targets.end(), b.targets.begin(), b.targets.end());
      }
      EXPECT_EQ(joined, reference[s]) << "W=" << W << " step " << s;
    }
  }
}

TEST_F(DataTest, LoaderCursorSaveRestore) {
  const std::string p = make_index_file("d.bin", 50 * 4 + 1);
  DataLoaderOptions o{.global_batch = 6, .seq_len = 4, .rank = 1, .world_size = 2, .seed = 3};
  DataLoader a = open_or_die(p, o);
  for (int s = 0; s < 11; ++s) next(a);  // crosses an epoch (50 samples)
  const DataCursor saved = a.cursor();
  EXPECT_EQ(saved.position, 66u);
  const Batch expected = next(a);
  const Batch expected2 = next(a);

  DataLoader b = open_or_die(p, o);
  b.set_cursor(saved);
  EXPECT_EQ(next(b), expected);
  EXPECT_EQ(next(b), expected2);
  EXPECT_EQ(at(b, 11), expected);
  b.reset();
  EXPECT_EQ(b.cursor().position, 0u);
  DataLoader c = open_or_die(p, o);
  EXPECT_EQ(next(b), next(c));
}

TEST_F(DataTest, LoaderWithoutShuffleReadsFileOrder) {
  const int T = 5, N = 7, B = 2;
  const std::string p = make_index_file("d.bin", N * T + 1);
  DataLoader loader = open_or_die(p, {.global_batch = B, .seq_len = T, .seed = 77, .shuffle = false});
  for (int s = 0; s < 10; ++s) {
    std::vector<int64_t> ids = samples_of(next(loader), T);
    EXPECT_EQ(ids, (std::vector<int64_t>{(s * B) % N, (s * B + 1) % N})) << "step " << s;
  }
}

TEST_F(DataTest, LoaderOpenErrors) {
  const std::string p = make_index_file("d.bin", 100);
  DataLoader loader;
  Status st = DataLoader::open(p, {.global_batch = 6, .seq_len = 4, .world_size = 4}, &loader);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("global batch 6"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("world size 4"), std::string::npos) << st.message();

  st = DataLoader::open(p, {.global_batch = 8, .seq_len = 16}, &loader);  // 6 samples < 8
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(p), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("100 tokens"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("needs 129 tokens"), std::string::npos) << st.message();
  // Exactly enough: 8 * 12 + 1 = 97 <= 100.
  EXPECT_TRUE(DataLoader::open(p, {.global_batch = 8, .seq_len = 12}, &loader).is_ok());

  st = DataLoader::open(p, {.global_batch = 4, .seq_len = 4, .rank = 2, .world_size = 2}, &loader);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  st = DataLoader::open(path("missing_val.bin"), {.global_batch = 4, .seq_len = 4}, &loader);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("perigee-data --fortunes --out " + path("missing")), std::string::npos);
  write_text(path("junk.bin"), "this is not a token file, but it is long enough to hold a header......");
  st = DataLoader::open(path("junk.bin"), {.global_batch = 1, .seq_len = 1}, &loader);
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find("bad magic"), std::string::npos);
}

TEST_F(DataTest, LoaderRefusesTokensTheModelVocabularyLacks) {
  std::vector<int32_t> tokens(100, 65);
  tokens[77] = 200;  // a byte-level file (vocab 256) for a model of 128 tokens
  const std::string p = path("bytes.bin");
  ASSERT_TRUE(write_token_file(p, tokens, 256).is_ok());
  DataLoader loader;
  const Status st = DataLoader::open(p, {.global_batch = 2, .seq_len = 8, .model_vocab = 128}, &loader);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  for (const std::string& want : std::vector<std::string>{p, "token 200 at position 77", "[0, 128)",
                                                          "[model] vocab_size", "has 256 tokens"})
    EXPECT_NE(st.message().find(want), std::string::npos) << want << " missing in: " << st.message();
  EXPECT_TRUE(DataLoader::open(p, {.global_batch = 2, .seq_len = 8, .model_vocab = 201}, &loader).is_ok());
  EXPECT_TRUE(DataLoader::open(p, {.global_batch = 2, .seq_len = 8}, &loader).is_ok());  // no model: no check
}

}  // namespace
}  // namespace perigee::runtime
