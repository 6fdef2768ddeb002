// Shared helpers of the checkpoint tests: a GPT-shaped snapshot with awkward float values, a
// scratch folder per test, and byte-level file surgery for the corruption campaign.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "checkpoint/snapshot.hpp"

namespace perigee::checkpoint::test_support {

// A small GPT-like state: buffers params, adam_m, adam_v with embedding, per-layer and final
// views (table order not sorted by offset, to check the order round-trips), plus full metadata.
inline Snapshot make_snapshot(int64_t step, uint64_t seed, int n_layer = 2, int n_embd = 16,
                              int world_size = 2) {
  const int vocab = 32, context = 8, C = n_embd;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {{"wte.weight", {vocab, C}},
                                                                      {"wpe.weight", {context, C}}};
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    shapes.push_back({p + "ln_1.weight", {C}});
    shapes.push_back({p + "attn.c_attn.weight", {3 * C, C}});
    shapes.push_back({p + "attn.c_attn.bias", {3 * C}});
    shapes.push_back({p + "mlp.c_fc.weight", {4 * C, C}});
    shapes.push_back({p + "mlp.c_proj.weight", {C, 4 * C}});
  }
  shapes.push_back({"ln_f.weight", {C}});
  std::vector<View> views;
  uint64_t offset = 0;
  for (const auto& [name, shape] : shapes) {
    View v{name, offset, shape};
    offset += v.size();
    views.push_back(v);
  }
  std::swap(views[0], views[1]);  // table order != offset order

  Snapshot s;
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    Buffer b;
    b.name = name;
    b.views = views;
    b.data.resize(offset);
    for (float& f : b.data) f = static_cast<float>(static_cast<int64_t>(next() % 2000001) - 1000000) * 1e-6f;
    s.buffers.push_back(std::move(b));
  }
  // Values whose bits must survive exactly.
  std::vector<float>& p = s.buffers[0].data;
  uint32_t nan_payload = 0x7FC12345u;
  std::memcpy(&p[0], &nan_payload, 4);
  p[1] = -0.0f;
  p[2] = std::numeric_limits<float>::infinity();
  p[3] = -std::numeric_limits<float>::infinity();
  p[4] = std::numeric_limits<float>::denorm_min();
  p[5] = std::numeric_limits<float>::max();

  SnapshotMeta& m = s.meta;
  m.step = step;
  m.world_size = world_size;
  m.rng_states = {{"init", {seed}}, {"dropout", {next(), next()}}};
  for (int r = 0; r < world_size; ++r) m.data_cursors.push_back({static_cast<uint64_t>(step * 16 + r), 7});
  m.lr_schedule = LrScheduleState{"warmup_cosine", 6e-4, 0.1, 30, 1000, 5.5e-4};
  m.model_shape = {{"n_layer", n_layer}, {"n_head", 4},    {"n_embd", n_embd},
                   {"context", context}, {"vocab", vocab}, {"padded_vocab", vocab}};
  m.config_json =
      "{\n  \"model\": {\"n_layer\": " + std::to_string(n_layer) + "},\n  \"train\": {\"lr\": 0.0006}\n}";
  // Doubles that need all 64 bits (a float64 -> float32 -> float64 trip would change them).
  m.series = {{"losses", {1.0 / 3.0, 10.8 + 1e-13 * static_cast<double>(seed), 2.5e-300}},
              {"norms", {std::sqrt(2.0)}}};
  return s;
}

// A fresh, empty folder under the temp directory, removed at destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (std::filesystem::temp_directory_path() /
             ("perigee-ckpt-" + tag + "-" + (info ? std::string(info->name()) : "x") + "-" +
              std::to_string(::getpid())))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// XORs the byte at `offset` of a file with `mask`.
inline void flip_byte(const std::string& path, uint64_t offset, unsigned char mask = 0x10) {
  std::string bytes = read_bytes(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(static_cast<unsigned char>(bytes[offset]) ^ mask);
  write_bytes(path, bytes);
}

// Offset of the first occurrence of `needle` in the file (npos when absent).
inline size_t find_in_file(const std::string& path, const std::string& needle) {
  return read_bytes(path).find(needle);
}

// Offset of the bytes of `values` (as stored, fp32 little-endian) in the file.
inline size_t find_floats(const std::string& path, const float* values, size_t count) {
  return read_bytes(path).find(std::string(reinterpret_cast<const char*>(values), count * sizeof(float)));
}

}  // namespace perigee::checkpoint::test_support
