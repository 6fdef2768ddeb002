// ActCast and CastScratch (see act_cast.hpp).
#include "kernels/act_cast.hpp"

#include <cstdint>

#include "kernels/backend.hpp"

namespace perigee::kernels {
namespace {

constexpr size_t kAlignFloats = 16;  // every temporary starts on a 64-byte boundary

size_t aligned_floats(size_t n) {
  return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
}

}  // namespace

CastScratch::~CastScratch() {
  clear();
}

void CastScratch::clear() {
  if (data_ != nullptr) backend_->release(data_);
  data_ = nullptr;
  bytes_ = 0;
}

Status CastScratch::reserve(Backend& backend, size_t bytes, void** out) {
  PERIGEE_REQUIRE(backend_ == nullptr || backend_ == &backend, StatusCode::kInternal,
                  "CastScratch used with two backends");
  if (bytes > bytes_ || data_ == nullptr) {
    if (data_ != nullptr) backend.release(data_);
    data_ = nullptr;
    bytes_ = 0;
    PERIGEE_CHECK(backend.allocate(&data_, bytes));
    backend_ = &backend;
    bytes_ = bytes;
  }
  *out = data_;
  return Status::ok();
}

void ActCast::input(ConstAct a, size_t n, const float** slot) {
  args_.push_back(Arg{a.data, a.dtype, n, slot, nullptr});
}

void ActCast::output(Act a, size_t n, float** slot) {
  args_.push_back(Arg{a.data, a.dtype, n, nullptr, slot});
}

void ActCast::rounded_input(const float* a, size_t n, const float** slot) {
  args_.push_back(Arg{a, DType::kF32, n, slot, nullptr, /*rounded=*/true});
}

size_t ActCast::temp_floats(DType dtype, size_t n, bool rounded) {
  if (rounded) return aligned_floats(n) + aligned_floats((n + 1) / 2);
  return dtype == DType::kBF16 ? aligned_floats(n) : 0;
}

Status ActCast::run(const std::function<Status()>& op) {
  size_t floats = 0;
  for (const Arg& a : args_) floats += temp_floats(a);
  float* temp = nullptr;
  if (floats > 0) {
    void* p = nullptr;
    PERIGEE_CHECK(scratch_.reserve(backend_, floats * sizeof(float), &p));
    temp = static_cast<float*>(p);
  }
  size_t used = 0;
  for (const Arg& a : args_) {
    float* fp32 = nullptr;
    if (a.data != nullptr && a.rounded) {
      fp32 = temp + used;
      auto* bits = reinterpret_cast<uint16_t*>(temp + used + aligned_floats(a.n));
      used += temp_floats(a);
      PERIGEE_CHECK(backend_.to_bf16(bits, static_cast<const float*>(a.data), a.n));
      PERIGEE_CHECK(backend_.from_bf16(fp32, bits, 1.0f, a.n));
    } else if (a.data == nullptr || a.dtype == DType::kF32) {
      fp32 = static_cast<float*>(const_cast<void*>(a.data));
    } else {
      fp32 = temp + used;
      used += aligned_floats(a.n);
      if (a.in_slot != nullptr) {
        PERIGEE_CHECK(backend_.from_bf16(fp32, static_cast<const uint16_t*>(a.data), 1.0f, a.n));
      }
    }
    if (a.in_slot != nullptr) *a.in_slot = fp32;
    if (a.out_slot != nullptr) *a.out_slot = fp32;
  }
  PERIGEE_CHECK(op());
  used = 0;
  for (const Arg& a : args_) {
    if (a.out_slot != nullptr && a.data != nullptr && a.dtype == DType::kBF16) {
      PERIGEE_CHECK(backend_.to_bf16(static_cast<uint16_t*>(const_cast<void*>(a.data)), temp + used, a.n));
    }
    used += temp_floats(a);
  }
  return Status::ok();
}

}  // namespace perigee::kernels
