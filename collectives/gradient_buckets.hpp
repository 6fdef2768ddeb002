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
#pragma once

#include <cstddef>

#include "collectives/communicator.hpp"
#include "core/status.hpp"

namespace perigee::collectives {

class GradientBuckets {
 public:
  // comm is not owned and must outlive this object.
  GradientBuckets(Communicator* comm, size_t bucket_bytes);

  // True when buckets go out during the backward pass (bucket_bytes > 0 and comm overlaps).
  bool overlapping() const { return bucket_elements_ > 0; }
  size_t bucket_bytes() const { return bucket_elements_ * sizeof(float); }

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
  double wait_seconds() const { return wait_seconds_; }

 private:
  Status start(size_t first, size_t end);

  Communicator* comm_;
  size_t bucket_elements_ = 0;  // 0: no buckets during the backward pass
  float* buffer_ = nullptr;
  size_t count_ = 0;
  size_t ready_ = 0;    // [ready_, count_) is final
  size_t started_ = 0;  // [started_, count_) has gone out
  bool in_pass_ = false;
  int buckets_ = 0;
  double wait_seconds_ = 0.0;
};

}  // namespace perigee::collectives
