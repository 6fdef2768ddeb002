// The memory budget (runtime/memory_budget.hpp): byte formatting, the fit check and its message, and
// GptModel::memory_items against what GptModel::init really allocates.
#include <gtest/gtest.h>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/memory_budget.hpp"

namespace perigee::runtime {
namespace {

TEST(MemoryBudget, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(uint64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(uint64_t{200} << 40), "200.0 TiB");
  EXPECT_EQ(format_bytes(UINT64_MAX), "more than 16 EiB");
}

TEST(MemoryBudget, TotalsSaturate) {
  EXPECT_EQ(saturating_add(UINT64_MAX - 1, 2), UINT64_MAX);
  EXPECT_EQ(saturating_mul(uint64_t{1} << 40, uint64_t{1} << 30), UINT64_MAX);
  EXPECT_EQ(saturating_mul(0, UINT64_MAX), 0u);
  MemoryDemand d{"m", 0, {{"a", uint64_t{1} << 62}, {"b", uint64_t{1} << 62}}, 8, {{"c", 5}}};
  EXPECT_EQ(d.total(), UINT64_MAX);
}

TEST(MemoryBudget, FitsUpToTheLastByte) {
  MemoryDemand d{"test memory", 1000, {{"state", 300}, {"activations", 100}}, 2, {{"staging", 200}}};
  EXPECT_EQ(d.total(), 1000u);
  EXPECT_TRUE(check_fits(d, "advice").is_ok());
  d.available = 999;
  const Status s = check_fits(d, "Do less.");
  ASSERT_EQ(s.code(), StatusCode::kOutOfMemory);
  const std::string want =
      "the job does not fit in test memory: it needs 1000 B, 999 B is free (short by 1 B):\n"
      "    300 B  state\n    100 B  activations\n    = 400 B per rank, x 2 ranks sharing it\n"
      "    200 B  staging\n  Do less.";
  EXPECT_EQ(s.message(), want);
}

size_t item_bytes(const std::vector<MemoryItem>& items, const std::string& prefix) {
  for (const auto& i : items)
    if (i.what.starts_with(prefix)) return i.bytes;
  ADD_FAILURE() << "no item " << prefix;
  return 0;
}

// The estimate is the allocation: every storage choice, with and without recomputation.
TEST(MemoryBudget, ModelItemsAreWhatInitAllocates) {
  using kernels::DType;
  const GptShape shape{3, 4, 64, 32, 200, 256};
  kernels::cpu::CpuBackend cpu(1);
  struct Case {
    DType acts, logits;
    bool recompute;
  };
  for (const Case c : {Case{DType::kF32, DType::kF32, false}, Case{DType::kBF16, DType::kF32, false},
                       Case{DType::kBF16, DType::kBF16, false}, Case{DType::kF32, DType::kF32, true},
                       Case{DType::kBF16, DType::kBF16, true}}) {
    const auto items = GptModel::memory_items(shape, cpu, 3, 32, c.acts, c.logits, c.recompute);
    GptModel m;
    ASSERT_TRUE(m.init(shape, &cpu, 3, 32, c.acts, c.logits, c.recompute).is_ok());
    const std::string what = std::string(kernels::dtype_name(c.acts)) + "/" + kernels::dtype_name(c.logits) +
                             (c.recompute ? " recompute" : "");
    EXPECT_EQ(item_bytes(items, "parameters"), 16 * m.num_parameters()) << what;
    EXPECT_EQ(item_bytes(items, "activations"), m.activation_bytes()) << what;
    EXPECT_EQ(item_bytes(items, "input and target tokens"), 2u * 3 * 32 * 4) << what;
    EXPECT_EQ(items.size(), 3u) << what;
  }
}

TEST(MemoryBudget, AnUnaddressableShapeGetsOneRoughItem) {
  // T = 2^30: the CPU's attention probabilities alone would be B * NH * T^2 floats.
  const GptShape shape{2, 2, 64, 1 << 30, 256, 256};
  kernels::cpu::CpuBackend cpu(1);
  const auto items =
      GptModel::memory_items(shape, cpu, 4, 1 << 30, kernels::DType::kF32, kernels::DType::kF32, false);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_NE(items[0].what.find("rough estimate"), std::string::npos) << items[0].what;
  EXPECT_EQ(items[0].bytes, UINT64_MAX);
  EXPECT_FALSE(check_fits(MemoryDemand{"m", UINT64_MAX - 1, items, 1, {}}, "").is_ok());
}

}  // namespace
}  // namespace perigee::runtime
