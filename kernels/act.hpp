// Activation tensors of either storage type: a pointer into backend memory plus the element type
// stored there. fp32 is the reference; bf16 (raw uint16_t bits, rounded as core/bf16.hpp says) halves
// the memory and traffic of the activations that feed GEMMs ([device] activations = "bf16").
// Act and ConstAct convert implicitly from float*/uint16_t* (and nullptr), so fp32 callers keep
// passing plain pointers. Ops always compute in fp32: a bf16 input is widened exactly on load and a
// bf16 output is rounded once on store. A GEMM with a bf16 output (matmul_forward, and the pre-GELU
// output of matmul_gelu_forward) adds its bias rounded to bf16 first, on every backend and path:
// cuBLASLt takes a bias of D's type (kernels/cuda/matmul_bf16.cuh), and PyTorch's autocast and llm.c
// do the same; the CPU backend and the ActCast path round it too (ActCast::rounded_input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace perigee::kernels {

enum class DType : uint8_t { kF32, kBF16 };

constexpr size_t dtype_size(DType t) {
  return t == DType::kBF16 ? 2 : 4;
}
constexpr const char* dtype_name(DType t) {
  return t == DType::kBF16 ? "bf16" : "fp32";
}

// A writable activation tensor.
struct Act {
  void* data = nullptr;
  DType dtype = DType::kF32;

  constexpr Act() = default;
  constexpr Act(std::nullptr_t) {}                              // NOLINT(google-explicit-constructor)
  constexpr Act(float* p) : data(p) {}                          // NOLINT(google-explicit-constructor)
  constexpr Act(uint16_t* p) : data(p), dtype(DType::kBF16) {}  // NOLINT(google-explicit-constructor)
  constexpr Act(void* p, DType t) : data(p), dtype(t) {}

  bool is_f32() const { return dtype == DType::kF32; }
  // The typed pointer when the tensor has that type, else null.
  float* f32() const { return dtype == DType::kF32 ? static_cast<float*>(data) : nullptr; }
  uint16_t* bf16() const { return dtype == DType::kBF16 ? static_cast<uint16_t*>(data) : nullptr; }
};

// A read-only activation tensor.
struct ConstAct {
  const void* data = nullptr;
  DType dtype = DType::kF32;

  constexpr ConstAct() = default;
  constexpr ConstAct(std::nullptr_t) {}            // NOLINT(google-explicit-constructor)
  constexpr ConstAct(const float* p) : data(p) {}  // NOLINT(google-explicit-constructor)
  constexpr ConstAct(const uint16_t* p)
      : data(p), dtype(DType::kBF16) {}                        // NOLINT(google-explicit-constructor)
  constexpr ConstAct(Act a) : data(a.data), dtype(a.dtype) {}  // NOLINT(google-explicit-constructor)
  constexpr ConstAct(const void* p, DType t) : data(p), dtype(t) {}

  bool is_f32() const { return dtype == DType::kF32; }
  const float* f32() const { return dtype == DType::kF32 ? static_cast<const float*>(data) : nullptr; }
  const uint16_t* bf16() const {
    return dtype == DType::kBF16 ? static_cast<const uint16_t*>(data) : nullptr;
  }
};

// True when every listed tensor is fp32 (null tensors count as fp32).
inline bool all_f32(std::initializer_list<ConstAct> tensors) {
  for (const ConstAct& t : tensors) {
    if (t.data != nullptr && !t.is_f32()) return false;
  }
  return true;
}

}  // namespace perigee::kernels
