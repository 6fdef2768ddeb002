#include "collectives/gradient_buckets.hpp"

#include <chrono>
#include <utility>

namespace perigee::collectives {

GradientBuckets::GradientBuckets(Communicator* comm, size_t bucket_bytes) : comm_(comm) {
  if (comm_ != nullptr && comm_->overlaps() && comm_->size() > 1 && bucket_bytes > 0) {
    bucket_elements_ = (bucket_bytes + sizeof(float) - 1) / sizeof(float);
  }
}

GradientBuckets::~GradientBuckets() {
  if (in_pass_ && buckets_ > 0 && comm_ != nullptr) (void)comm_->wait_all();
}

Status GradientBuckets::set_bf16_wire(Bf16WireCodec codec) {
  PERIGEE_REQUIRE(!in_pass_, StatusCode::kInternal, "GradientBuckets::set_bf16_wire during a pass");
  PERIGEE_REQUIRE(
      codec.wire != nullptr && codec.encode && codec.decode && codec.synchronize,
      StatusCode::kInvalidArgument,
      "GradientBuckets::set_bf16_wire: the wire buffer, encode, decode and synchronize are all required");
  codec_ = std::move(codec);
  return Status::ok();
}

Status GradientBuckets::begin(float* buffer, size_t count) {
  PERIGEE_REQUIRE(comm_ != nullptr, StatusCode::kInvalidArgument, "GradientBuckets: no communicator");
  PERIGEE_REQUIRE(!in_pass_, StatusCode::kInternal,
                  "GradientBuckets::begin: the previous pass was not finished (", buckets_,
                  " bucket(s) may still be in flight)");
  buffer_ = buffer;
  count_ = ready_ = started_ = count;
  in_pass_ = true;
  buckets_ = overlapped_ = 0;
  wait_seconds_ = 0.0;
  return Status::ok();
}

Status GradientBuckets::start(size_t first, size_t end) {
  ++buckets_;
  started_ = first;
  if (!codec_) {
    return comm_->start_all_reduce(buffer_ + first, buffer_ + first, end - first, DataType::kFloat32,
                                   ReduceOp::kAvg);
  }
  uint16_t* wire = codec_->wire + first;
  PERIGEE_CHECK(codec_->encode(wire, buffer_ + first, end - first));
  PERIGEE_CHECK(codec_->synchronize());
  return comm_->start_all_reduce(wire, wire, end - first, DataType::kBFloat16, ReduceOp::kSum);
}

Status GradientBuckets::ready_from(size_t first) {
  PERIGEE_REQUIRE(in_pass_, StatusCode::kInternal, "GradientBuckets::ready_from outside a pass (call begin)");
  PERIGEE_REQUIRE(first <= ready_, StatusCode::kInternal, "GradientBuckets::ready_from(", first,
                  "): elements from ", ready_, " were already final; the ready point only moves down");
  ready_ = first;
  if (!overlapping()) return Status::ok();
  if (started_ - ready_ >= bucket_elements_) return start(ready_, started_);
  return comm_->progress();
}

Status GradientBuckets::finish() {
  PERIGEE_REQUIRE(in_pass_, StatusCode::kInternal, "GradientBuckets::finish outside a pass (call begin)");
  in_pass_ = false;
  overlapped_ = buckets_;  // what the pass started before this call
  const auto t0 = std::chrono::steady_clock::now();
  // The rest goes through start_all_reduce even without buckets: one bucket of the whole buffer is
  // then the same collective whether or not buckets were asked for (same sums, bit for bit).
  Status s = Status::ok();
  if (started_ > 0 && comm_->size() > 1) s = start(0, started_);  // one rank: already its own average
  // Whatever was started must be waited for, even after a failed start.
  Status w = comm_->wait_all();
  wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  PERIGEE_CHECK(s);
  PERIGEE_CHECK(w);
  // bf16 sums back into the fp32 buffer as averages (one rank sent nothing: the buffer is final).
  if (codec_ && buckets_ > 0) {
    PERIGEE_CHECK(codec_->decode(buffer_, codec_->wire, 1.0f / static_cast<float>(comm_->size()), count_));
  }
  return Status::ok();
}

}  // namespace perigee::collectives
