// The matmul family runs out of place: matmul_forward, matmul_backward and the fused GELU forms refuse
// an output that shares a byte with an input or with another output (kInvalidArgument naming both),
// before writing anything; tensors that only touch end to start are accepted. A GEMM reading a tensor
// it writes gives undefined results, and the fused cuBLASLt forms write pre and out in one epilogue.
// Shared by the CPU and CUDA tests (every backend and precision must refuse the same calls).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

namespace perigee::kernels::testing {

// A pool of backend memory filled with a pattern; tensors are float offsets into it.
class MatmulAliasPool {
 public:
  static constexpr int kN = 4, kC = 8, kOC = 12;
  static constexpr size_t kFloats = 4096;

  explicit MatmulAliasPool(Backend& be) : be_(be) {
    PERIGEE_CHECK_OR_DIE(be_.allocate(reinterpret_cast<void**>(&base_), kFloats * sizeof(float)));
    reset();
  }
  ~MatmulAliasPool() { be_.release(base_); }
  MatmulAliasPool(const MatmulAliasPool&) = delete;
  MatmulAliasPool& operator=(const MatmulAliasPool&) = delete;

  float* at(size_t offset) const { return base_ + offset; }
  uint16_t* bf16_at(size_t offset) const { return reinterpret_cast<uint16_t*>(base_ + offset); }
  void reset() {
    host_.resize(kFloats);
    for (size_t i = 0; i < kFloats; ++i) host_[i] = 0.01f * static_cast<float>(i % 97) - 0.4f;
    PERIGEE_CHECK_OR_DIE(be_.copy_to_device(base_, host_.data(), kFloats * sizeof(float)));
  }
  // True when the pool still holds what reset() wrote (a refused call wrote nothing).
  bool untouched() const {
    std::vector<float> now(kFloats);
    PERIGEE_CHECK_OR_DIE(be_.copy_to_host(now.data(), base_, kFloats * sizeof(float)));
    return now == host_;
  }

 private:
  Backend& be_;
  float* base_ = nullptr;
  std::vector<float> host_;
};

namespace detail {

inline void expect_refused(const MatmulAliasPool& pool, const Status& s, const std::string& what,
                           const std::string& first, const std::string& second) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what << ": " << s.message();
  EXPECT_NE(s.message().find(" " + first + " "), std::string::npos) << what << ": " << s.message();
  EXPECT_NE(s.message().find(second), std::string::npos) << what << ": " << s.message();
  EXPECT_TRUE(pool.untouched()) << what << ": a refused call wrote to memory";
}

}  // namespace detail

inline void expect_matmul_overlaps_refused(Backend& be) {
  using P = MatmulAliasPool;
  constexpr int N = P::kN, C = P::kC, OC = P::kOC;
  constexpr size_t nc = size_t{N} * C, noc = size_t{N} * OC, occ = size_t{OC} * C;
  P pool(be);
  // Disjoint operands, each at its own offset; the cases below move one onto another.
  const size_t inp = 0, weight = 256, bias = 512, out = 768, pre = 1024, dout = 1280, dinp = 1536,
               dweight = 1792, dbias = 2048;
  const float* W = pool.at(weight);
  const float* b = pool.at(bias);

  using Call = std::function<Status()>;
  struct Case {
    std::string what, first, second;
    Call call;
  };
  const std::vector<Case> refused = {
      {"forward: out over inp", "out", "inp",
       [&] { return be.matmul_forward(pool.at(inp), pool.at(inp), W, b, N, C, OC); }},
      {"forward: out over the weight's last row", "out", "weight",
       [&] { return be.matmul_forward(pool.at(weight + occ - 1), pool.at(inp), W, b, N, C, OC); }},
      {"forward: out over the bias", "out", "bias",
       [&] { return be.matmul_forward(pool.at(bias - 4), pool.at(inp), W, b, N, C, OC); }},
      {"forward: bf16 out over fp32 inp", "out", "inp",
       [&] { return be.matmul_forward(pool.bf16_at(inp + 2), pool.at(inp), W, b, N, C, OC); }},
      {"gelu forward: out over pre", "out", "pre",
       [&] { return be.matmul_gelu_forward(pool.at(pre), pool.at(pre), pool.at(inp), W, b, N, C, OC); }},
      {"gelu forward: pre over inp", "pre", "inp",
       [&] { return be.matmul_gelu_forward(pool.at(inp + 1), pool.at(out), pool.at(inp), W, b, N, C, OC); }},
      {"backward: dinp over dout", "dinp", "dout",
       [&] {
         return be.matmul_backward(pool.at(dout), pool.at(dweight), pool.at(dbias), pool.at(dout),
                                   pool.at(inp), W, N, C, OC);
       }},
      {"backward: bf16 dinp over fp32 dout", "dinp", "dout",
       [&] {
         return be.matmul_backward(pool.bf16_at(dout + noc - 1), pool.at(dweight), pool.at(dbias),
                                   pool.at(dout), pool.at(inp), W, N, C, OC);
       }},
      {"backward: dinp over the weight", "dinp", "weight",
       [&] {
         return be.matmul_backward(pool.at(weight + 8), nullptr, nullptr, pool.at(dout), pool.at(inp), W, N,
                                   C, OC);
       }},
      {"backward: dweight over inp", "dweight", "inp",
       [&] {
         return be.matmul_backward(nullptr, pool.at(inp + nc - 1), nullptr, pool.at(dout), pool.at(inp), W, N,
                                   C, OC);
       }},
      {"backward: dbias over dweight", "dweight", "dbias",
       [&] {
         return be.matmul_backward(pool.at(dinp), pool.at(dweight), pool.at(dweight + occ - 1), pool.at(dout),
                                   pool.at(inp), W, N, C, OC);
       }},
      {"gelu backward: dpre over pre", "dpre", "pre",
       [&] {
         return be.matmul_backward_gelu(pool.at(pre), pool.at(dweight), pool.at(dbias), pool.at(dout),
                                        pool.at(inp), W, pool.at(pre), N, C, OC);
       }},
      {"gelu backward: bf16 dpre over bf16 pre", "dpre", "pre",
       [&] {
         return be.matmul_backward_gelu(pool.bf16_at(pre + 2), pool.at(dweight), pool.at(dbias),
                                        pool.at(dout), pool.bf16_at(inp), W, pool.bf16_at(pre), N, C, OC);
       }},
  };
  for (const Case& c : refused) {
    SCOPED_TRACE(c.what);
    detail::expect_refused(pool, c.call(), c.what, c.first, c.second);
  }

  // Operands that touch end to start (and inputs that overlap each other) are fine.
  EXPECT_TRUE(
      be.matmul_forward(pool.at(inp + nc), pool.at(inp), W, pool.at(inp + nc + noc), N, C, OC).is_ok());
  pool.reset();
  EXPECT_TRUE(be.matmul_gelu_forward(pool.at(out), pool.at(out + noc), pool.at(inp), W, b, N, C, OC).is_ok());
  pool.reset();
  EXPECT_TRUE(be.matmul_backward(pool.at(dout - nc), pool.at(dout + noc), pool.at(dout + noc + occ),
                                 pool.at(dout), pool.at(inp), W, N, C, OC)
                  .is_ok());
  pool.reset();
  EXPECT_TRUE(be.matmul_backward_gelu(pool.at(dinp), pool.at(dweight), pool.at(dbias), pool.at(dout),
                                      pool.at(inp), W, pool.at(inp), N, C, OC)
                  .is_ok());
  EXPECT_TRUE(be.synchronize().is_ok());
}

}  // namespace perigee::kernels::testing
