// Shared helpers for the CPU backend tests (tests/kernels/test_cpu_*.cpp): backend-owned buffers,
// seeded random fills, a tolerance check (|got - ref| <= atol + rtol * |ref|) and a central
// finite-difference gradient checker for scalar objectives evaluated in double.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace perigee::kernels::cpu::testing {

// A buffer allocated by (and released to) a backend. CPU memory is host memory, so tests read and
// write it directly.
template <typename T>
class Buffer {
 public:
  Buffer(Backend& backend, size_t n) : backend_(&backend), n_(n) {
    void* p = nullptr;
    PERIGEE_CHECK_OR_DIE(backend.allocate(&p, n * sizeof(T)));
    data_ = static_cast<T*>(p);
  }
  Buffer(Backend& backend, const std::vector<T>& values) : Buffer(backend, values.size()) {
    std::memcpy(data_, values.data(), values.size() * sizeof(T));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { backend_->release(data_); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  std::vector<T> to_vector() const { return std::vector<T>(data_, data_ + n_); }
  void fill(T value) {
    for (size_t i = 0; i < n_; ++i) data_[i] = value;
  }
  void assign(const std::vector<T>& values) {
    ASSERT_EQ(values.size(), n_);
    std::memcpy(data_, values.data(), n_ * sizeof(T));
  }

 private:
  Backend* backend_;
  size_t n_;
  T* data_ = nullptr;
};

inline std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline std::vector<int32_t> random_tokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(gen);
  return v;
}

// Expects |got[i] - ref[i]| <= atol + rtol * |ref[i]| for every i; reports the first few failures.
template <typename Got>
void expect_close(const std::string& what, const Got* got, const std::vector<double>& ref, double atol,
                  double rtol) {
  int failures = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double tol = atol + rtol * std::fabs(ref[i]);
    if (!(err <= tol) && failures < 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", expected " << ref[i] << " (error " << err
                    << " > tolerance " << tol << ")";
      ++failures;
    }
  }
}

// Bitwise equality of two float ranges.
inline bool bit_identical(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

// sum_i out[i] * r[i] in double: the scalar objective of the gradient checks.
inline double weighted_sum(const float* out, const std::vector<float>& r) {
  double s = 0.0;
  for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>(out[i]) * r[i];
  return s;
}

// Tolerances of a finite-difference check: |analytic - fd| <= atol + rtol * |fd|.
struct GradTolerance {
  float eps;
  double atol;
  double rtol;
};

// Compares grad[i] with the central difference (L(x + h) - L(x - h)) / (x+h - (x-h)) for every i,
// where loss() re-runs the forward pass on the current x. x is restored afterwards. The step actually
// taken (after fp32 rounding of x +- eps) is used as the denominator.
inline void check_gradient(const std::string& what, float* x, const float* grad, size_t n,
                           const std::function<double()>& loss, const GradTolerance& tol) {
  int failures = 0;
  for (size_t i = 0; i < n; ++i) {
    const float saved = x[i];
    const float plus = saved + tol.eps;
    const float minus = saved - tol.eps;
    x[i] = plus;
    const double lp = loss();
    x[i] = minus;
    const double lm = loss();
    x[i] = saved;
    const double fd = (lp - lm) / (static_cast<double>(plus) - static_cast<double>(minus));
    const double err = std::fabs(static_cast<double>(grad[i]) - fd);
    const double bound = tol.atol + tol.rtol * std::fabs(fd);
    if (!(err <= bound) && failures < 5) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << grad[i] << ", finite difference " << fd
                    << " (error " << err << " > tolerance " << bound << ")";
      ++failures;
    }
  }
}

}  // namespace perigee::kernels::cpu::testing
