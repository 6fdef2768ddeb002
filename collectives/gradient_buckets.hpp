// GradientBuckets: averages one flat fp32 gradient buffer over the ranks in buckets while the
// backward pass is still producing it, so that communication overlaps computation (as PyTorch DDP
// does). The backward pass finalises the buffer from its end towards its start (the last layer
// first) and calls ready_from(first) whenever elements [first, count) hold their final values. As
// soon as at least bucket_bytes of final elements have not gone out yet, they go out as one
// Communicator::start_all_reduce (kAvg, in place); otherwise ready_from only lets the started
// buckets progress. finish() starts what is left and waits for everything.
//
// Bucket boundaries follow only from the ready_from calls and bucket_bytes, so every rank that runs
// the same model cuts the buffer alike (the Communicator contract: same collectives, same order).
// bucket_bytes 0, or a communicator that cannot overlap (Communicator::overlaps() false), gives one
// all-reduce of the whole buffer in finish(), after the backward pass. finish() always uses
// start_all_reduce + wait_all, so a model small enough for one bucket reduces exactly alike with
// and without buckets. With several buckets on 3+ ranks MPI may add the ranks' values in another
// order than one whole-buffer all-reduce would (fp32 rounding); on 2 ranks every sum is a + b.
//
// bf16 on the wire (set_bf16_wire): the buffer stays fp32, but each bucket is first rounded to bf16
// into a wire buffer of the same length (same indices), summed over the ranks as bf16 (kSum: half
// the bytes of fp32 on every link), and finish() widens the whole wire buffer back into the buffer
// times 1/size in fp32. The codec's functions run on the buffer's device (the backend's to_bf16 /
// from_bf16); encode is followed by synchronize before the communicator reads the wire buffer. On
// one rank nothing is sent and nothing is rounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "collectives/communicator.hpp"
#include "core/status.hpp"

namespace perigee::collectives {

// How the buffer goes to and from bf16 (see the top of this file).
struct Bf16WireCodec {
  uint16_t* wire = nullptr;  // as many elements as the buffer, in the same memory
  std::function<Status(uint16_t* dst, const float* src, size_t n)> encode;
  std::function<Status(float* dst, const uint16_t* src, float scale, size_t n)> decode;
  std::function<Status()> synchronize;  // encode's writes are visible to the communicator
};

class GradientBuckets {
 public:
  // comm is not owned and must outlive this object.
  GradientBuckets(Communicator* comm, size_t bucket_bytes);
  // A pass given up before finish() (the backward pass failed) still has buckets in flight that write
  // into the buffer: they are waited for (under the communicator's timeout) before the owner of the
  // buffer can free it.
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // True when buckets go out during the backward pass (bucket_bytes > 0 and comm overlaps).
  bool overlapping() const { return bucket_elements_ > 0; }
  size_t bucket_bytes() const { return bucket_elements_ * sizeof(float); }

  // Sends bf16 instead of fp32 from the next begin() on; the wire buffer must hold every pass's
  // count elements. kInvalidArgument when a function or the wire buffer is missing.
  Status set_bf16_wire(Bf16WireCodec codec);
  DataType wire_type() const { return codec_ ? DataType::kBFloat16 : DataType::kFloat32; }

  // A new pass over buffer[0, count). kInternal while the previous pass is unfinished.
  Status begin(float* buffer, size_t count);
  // Elements [first, count) are final. first never grows within a pass.
  Status ready_from(size_t first);
  // The whole buffer is final: starts the rest, waits for every bucket; the buffer then holds the
  // average over the ranks.
  Status finish();

  // The last (or current) pass: all-reduces started (none on one rank), and the seconds finish() blocked (the
  // communication that the backward pass did not hide).
  int buckets() const { return buckets_; }
  // Of them, those started before finish() (during the backward pass); set by finish().
  int overlapped() const { return overlapped_; }
  double wait_seconds() const { return wait_seconds_; }

 private:
  Status start(size_t first, size_t end);

  Communicator* comm_;
  std::optional<Bf16WireCodec> codec_;  // bf16 on the wire when set
  size_t bucket_elements_ = 0;          // 0: no buckets during the backward pass
  float* buffer_ = nullptr;
  size_t count_ = 0;
  size_t ready_ = 0;    // [ready_, count_) is final
  size_t started_ = 0;  // [started_, count_) has gone out
  bool in_pass_ = false;
  int buckets_ = 0;
  int overlapped_ = 0;
  double wait_seconds_ = 0.0;
};

}  // namespace perigee::collectives
