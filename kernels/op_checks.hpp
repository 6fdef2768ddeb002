// Argument checks shared by every Backend implementation (host code; also compiles under nvcc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "core/status.hpp"
#include "kernels/act.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels {

// kInvalidArgument naming `op` unless every pointer is non-null.
inline Status check_pointers(const char* op, std::initializer_list<const void*> ptrs) {
  int index = 0;
  for (const void* p : ptrs) {
    PERIGEE_REQUIRE(p != nullptr, StatusCode::kInvalidArgument, op, ": pointer argument ", index, " is null");
    ++index;
  }
  return Status::ok();
}

// kInvalidArgument naming `op` unless every dimension is positive.
inline Status check_dims(const char* op, std::initializer_list<int64_t> dims) {
  int index = 0;
  for (int64_t d : dims) {
    PERIGEE_REQUIRE(d > 0, StatusCode::kInvalidArgument, op, ": dimension argument ", index, " is ", d,
                    ", must be positive");
    ++index;
  }
  return Status::ok();
}

// kInvalidArgument naming `op` unless hp.step >= 1 and both betas lie in [0, 1) (the bias corrections
// divide by 1 - beta^step).
inline Status check_adamw_params(const char* op, const AdamWParams& hp) {
  PERIGEE_REQUIRE(hp.step >= 1, StatusCode::kInvalidArgument, op, ": step = ", hp.step, ", must be >= 1");
  PERIGEE_REQUIRE(hp.beta1 >= 0.0f && hp.beta1 < 1.0f && hp.beta2 >= 0.0f && hp.beta2 < 1.0f,
                  StatusCode::kInvalidArgument, op, ": betas (", hp.beta1, ", ", hp.beta2,
                  ") must lie in [0, 1)");
  return Status::ok();
}

// kInvalidArgument naming `op` unless the runs are sorted by offset and disjoint (a one-pass AdamW
// would update an element of two overlapping runs once, the per-run calls twice).
inline Status check_adamw_runs(const char* op, std::span<const AdamWRun> runs) {
  for (size_t i = 1; i < runs.size(); ++i) {
    PERIGEE_REQUIRE(runs[i].offset >= runs[i - 1].offset + runs[i - 1].count, StatusCode::kInvalidArgument,
                    op, ": run ", i, " at offset ", runs[i].offset, " starts inside run ", i - 1, " [",
                    runs[i - 1].offset, ", ", runs[i - 1].offset + runs[i - 1].count,
                    "); runs must be sorted and disjoint");
  }
  return Status::ok();
}

// True when n elements of `out` and n elements of `in` share bytes and have different storage types:
// an element-wise kernel that reads one type and writes the other in place would race (element i's
// bytes in one type hold parts of other elements in the other).
inline bool overlaps_other_storage(ConstAct out, ConstAct in, size_t n) {
  if (out.dtype == in.dtype || out.data == nullptr || in.data == nullptr || n == 0) return false;
  const auto o = reinterpret_cast<uintptr_t>(out.data);
  const auto i = reinterpret_cast<uintptr_t>(in.data);
  return o < i + n * dtype_size(in.dtype) && i < o + n * dtype_size(out.dtype);
}

// kInvalidArgument naming `op` when n elements of an output share bytes with n elements of an input of
// another storage type, whether they start at the same address or not (an in-place op rewrites each
// element in the type it read it in; a shifted overlap would also race in a parallel kernel).
inline Status check_alias_storage(const char* op, ConstAct out, ConstAct in, size_t n) {
  PERIGEE_REQUIRE(!overlaps_other_storage(out, in, n), StatusCode::kInvalidArgument, op,
                  ": the output aliases an input of another storage type (", dtype_name(out.dtype), " over ",
                  dtype_name(in.dtype), ")");
  return Status::ok();
}

// A tensor's bytes for the overlap checks; a null one overlaps nothing.
struct Extent {
  const char* name;
  const void* data;
  size_t bytes;
};

// kInvalidArgument naming `op` and both tensors when an output shares a byte with another output or
// with an input.
inline Status check_disjoint(const char* op, std::initializer_list<Extent> outs,
                             std::initializer_list<Extent> ins) {
  auto overlap = [](const Extent& x, const Extent& y) {
    if (x.data == nullptr || y.data == nullptr || x.bytes == 0 || y.bytes == 0) return false;
    const auto a = reinterpret_cast<uintptr_t>(x.data);
    const auto b = reinterpret_cast<uintptr_t>(y.data);
    return a < b + y.bytes && b < a + x.bytes;
  };
  for (auto o = outs.begin(); o != outs.end(); ++o) {
    for (auto p = o + 1; p != outs.end(); ++p) {
      PERIGEE_REQUIRE(!overlap(*o, *p), StatusCode::kInvalidArgument, op, ": the outputs ", o->name, " and ",
                      p->name, " overlap");
    }
    for (const Extent& i : ins) {
      PERIGEE_REQUIRE(!overlap(*o, i), StatusCode::kInvalidArgument, op, ": the output ", o->name,
                      " overlaps the input ", i.name, " (the matmul family runs out of place)");
    }
  }
  return Status::ok();
}

// The matmul family's forward operands (Backend::matmul_forward, and matmul_gelu_forward with its
// pre): no output over an input or over the other output. Dimensions that are not positive are left
// to check_dims.
inline Status check_matmul_forward_operands(const char* op, ConstAct out, ConstAct pre, ConstAct inp,
                                            const float* weight, const float* bias, int N, int C, int OC) {
  if (N <= 0 || C <= 0 || OC <= 0) return Status::ok();
  const size_t n = static_cast<size_t>(N), c = static_cast<size_t>(C), oc = static_cast<size_t>(OC);
  return check_disjoint(
      op,
      {{"out", out.data, n * oc * dtype_size(out.dtype)}, {"pre", pre.data, n * oc * dtype_size(pre.dtype)}},
      {{"inp", inp.data, n * c * dtype_size(inp.dtype)},
       {"weight", weight, oc * c * sizeof(float)},
       {"bias", bias, oc * sizeof(float)}});
}

// The backward's (matmul_backward, and matmul_backward_gelu with its pre, where dinp is dpre): dinp,
// dweight and dbias over none of dout, inp, weight, pre, nor over each other.
inline Status check_matmul_backward_operands(const char* op, ConstAct dinp, const float* dweight,
                                             const float* dbias, ConstAct dout, ConstAct inp,
                                             const float* weight, ConstAct pre, int N, int C, int OC) {
  if (N <= 0 || C <= 0 || OC <= 0) return Status::ok();
  const size_t n = static_cast<size_t>(N), c = static_cast<size_t>(C), oc = static_cast<size_t>(OC);
  return check_disjoint(op,
                        {{pre.data != nullptr ? "dpre" : "dinp", dinp.data, n * c * dtype_size(dinp.dtype)},
                         {"dweight", dweight, oc * c * sizeof(float)},
                         {"dbias", dbias, oc * sizeof(float)}},
                        {{"dout", dout.data, n * oc * dtype_size(dout.dtype)},
                         {"inp", inp.data, n * c * dtype_size(inp.dtype)},
                         {"weight", weight, oc * c * sizeof(float)},
                         {"pre", pre.data, n * c * dtype_size(pre.dtype)}});
}

}  // namespace perigee::kernels
