// The fused cross-entropy on bf16 logits in place, as GptModel runs it with [device] logits = "bf16":
// the bf16 gradient written over the logits must equal, bit for bit, the one written into a buffer of
// its own, with the same losses, for a vocabulary in column quadruples (Vp % 4 == 0) and one without, and
// one whose bf16 rows (120,000 bytes) are too long for a GPU kernel to hold in shared memory; an output
// over an input of another storage type is refused. Shared by the CPU and CUDA tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::testing {

inline void expect_crossentropy_in_place(Backend& be) {
  constexpr int N = 5;
  for (const int Vp : {1024, 1001, 60000}) {
    SCOPED_TRACE("Vp " + std::to_string(Vp));
    const int V = Vp - 3;
    const size_t n = static_cast<size_t>(N) * Vp;
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    std::vector<uint16_t> bits(n);
    for (auto& b : bits) b = float_to_bf16(u(rng));
    const std::vector<int32_t> host_targets = {3, 0, V - 1, 17, V / 2};

    void *logits = nullptr, *apart = nullptr, *losses = nullptr, *targets = nullptr;
    ASSERT_TRUE(be.allocate(&logits, n * sizeof(uint16_t)).is_ok());
    ASSERT_TRUE(be.allocate(&apart, n * sizeof(uint16_t)).is_ok());
    ASSERT_TRUE(be.allocate(&losses, 2 * N * sizeof(float)).is_ok());
    ASSERT_TRUE(be.allocate(&targets, N * sizeof(int32_t)).is_ok());
    ASSERT_TRUE(be.copy_to_device(logits, bits.data(), n * sizeof(uint16_t)).is_ok());
    ASSERT_TRUE(be.copy_to_device(targets, host_targets.data(), N * sizeof(int32_t)).is_ok());
    const auto* t = static_cast<const int32_t*>(targets);
    float* l = static_cast<float*>(losses);
    const ConstAct in(logits, DType::kBF16);

    ASSERT_TRUE(
        be.crossentropy_forward_backward(l, Act(apart, DType::kBF16), in, t, 1.0f / N, N, V, Vp).is_ok());
    ASSERT_TRUE(be.crossentropy_forward_backward(l + N, Act(logits, DType::kBF16), in, t, 1.0f / N, N, V, Vp)
                    .is_ok());
    std::vector<uint16_t> want(n), got(n);
    std::vector<float> loss(2 * N);
    ASSERT_TRUE(be.copy_to_host(want.data(), apart, n * sizeof(uint16_t)).is_ok());
    ASSERT_TRUE(be.copy_to_host(got.data(), logits, n * sizeof(uint16_t)).is_ok());
    ASSERT_TRUE(be.copy_to_host(loss.data(), losses, 2 * N * sizeof(float)).is_ok());
    EXPECT_EQ(std::memcmp(loss.data(), loss.data() + N, N * sizeof(float)), 0);
    size_t differ = 0, nonzero = 0, padding = 0;
    for (size_t i = 0; i < n; ++i) {
      differ += got[i] != want[i];
      nonzero += want[i] != 0;
      padding += static_cast<int>(i % Vp) >= V && want[i] != 0;
    }
    EXPECT_EQ(differ, 0u);
    EXPECT_GT(nonzero, n / 2);  // a real gradient, not zeros
    EXPECT_EQ(padding, 0u);     // padded columns get 0
    for (int i = 0; i < N; ++i) EXPECT_TRUE(loss[i] > 0.0f && loss[i] < 20.0f) << i << ": " << loss[i];

    // fp32 gradient over bf16 logits: refused, nothing written.
    const Status s = be.crossentropy_forward_backward(l, Act(logits, DType::kF32), in, t, 1.0f, N, V, Vp);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("aliases"), std::string::npos) << s.message();
    // ... and so is one that starts elsewhere inside them (a shifted overlap), before any write.
    std::vector<uint16_t> before(n), after(n);
    ASSERT_TRUE(be.copy_to_host(before.data(), logits, n * sizeof(uint16_t)).is_ok());
    // Two rows: an fp32 gradient from about the second bf16 row on (an even element, so 4-byte aligned)
    // covers bytes [2 Vp', 2 Vp' + 8 Vp) of the logits, which read [0, 4 Vp), Vp' = Vp rounded down to even.
    const Act shifted(static_cast<uint16_t*>(logits) + (Vp & ~1), DType::kF32);
    const Status s2 = be.crossentropy_forward_backward(l, shifted, in, t, 1.0f, 2, V, Vp);
    EXPECT_EQ(s2.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s2.message().find("aliases"), std::string::npos) << s2.message();
    ASSERT_TRUE(be.copy_to_host(after.data(), logits, n * sizeof(uint16_t)).is_ok());
    EXPECT_EQ(before, after);
    for (void* p : {logits, apart, losses, targets}) be.release(p);
  }
}

}  // namespace perigee::kernels::testing
