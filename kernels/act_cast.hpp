// ActCast: the generic path of an op whose activation arguments are not all fp32. Each bf16 input is
// widened (exactly) into an fp32 temporary, the op's fp32 implementation runs on fp32 pointers, and
// each fp32 temporary of a bf16 output is rounded into it (core/bf16.hpp's rule) afterwards; fp32
// arguments are passed straight through (except a rounded_input: see there). Any Backend can use it: the
// temporaries come from a grow-on-demand CastScratch in that backend's memory and the conversions are the
// backend's own to_bf16/from_bf16 ops. It is the CPU backend's bf16 implementation (the reference) and the
// CUDA backend's fallback for combinations without a native kernel. Outputs are written (=), never
// accumulated: a temporary starts undefined.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "core/status.hpp"
#include "kernels/act.hpp"

namespace perigee::kernels {

class Backend;

// One growing buffer of backend memory, released with its owner.
class CastScratch {
 public:
  CastScratch() = default;
  ~CastScratch();
  CastScratch(const CastScratch&) = delete;
  CastScratch& operator=(const CastScratch&) = delete;

  // At least `bytes` of `backend` memory at *out (the previous contents are not kept on growth).
  Status reserve(Backend& backend, size_t bytes, void** out);
  // Gives the memory back now (a backend's destructor calls it while the backend still works).
  void clear();
  size_t bytes() const { return bytes_; }

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class ActCast {
 public:
  ActCast(Backend& backend, CastScratch& scratch) : backend_(backend), scratch_(scratch) {}

  // Registers an argument of n elements; *slot receives the fp32 pointer the op is to use when run()
  // calls it (the tensor itself when it is fp32). A null tensor gives a null pointer.
  void input(ConstAct a, size_t n, const float** slot);
  void output(Act a, size_t n, float** slot);
  // An fp32 input the op is to read rounded to bf16 values (a GEMM's bias when its output is bf16:
  // kernels/act.hpp): *slot receives an fp32 temporary holding each element rounded once.
  void rounded_input(const float* a, size_t n, const float** slot);

  // Widens the bf16 inputs, calls op, rounds into the bf16 outputs.
  Status run(const std::function<Status()>& op);

  // The temporary floats run() takes for an argument of n elements of `dtype` (rounded: a
  // rounded_input): its fp32 form, and for a rounded input its bf16 bits too. A caller adds them up
  // over an op's arguments to size the CastScratch in advance.
  static size_t temp_floats(DType dtype, size_t n, bool rounded = false);

 private:
  struct Arg {
    const void* data;
    DType dtype;
    size_t n;
    const float** in_slot;
    float** out_slot;
    bool rounded = false;  // an fp32 input read as its bf16 rounding
  };
  static size_t temp_floats(const Arg& a) {
    return a.data == nullptr ? 0 : temp_floats(a.dtype, a.n, a.rounded);
  }
  Backend& backend_;
  CastScratch& scratch_;
  std::vector<Arg> args_;
};

}  // namespace perigee::kernels
