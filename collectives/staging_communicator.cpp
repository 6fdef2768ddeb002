#include "collectives/staging_communicator.hpp"

#include <algorithm>
#include <utility>

namespace perigee::collectives {
namespace {

const char* byte_ptr(const void* p, size_t offset) {
  return static_cast<const char*>(p) + offset;
}
char* byte_ptr(void* p, size_t offset) {
  return static_cast<char*>(p) + offset;
}

}  // namespace

Status HostStagingCommunicator::create(std::shared_ptr<Communicator> host, StagingCallbacks callbacks,
                                       std::unique_ptr<HostStagingCommunicator>* out, size_t chunk_bytes) {
  PERIGEE_REQUIRE(host != nullptr, StatusCode::kInvalidArgument,
                  "HostStagingCommunicator: no host communicator");
  PERIGEE_REQUIRE(
      callbacks.alloc_pinned && callbacks.free_pinned && callbacks.to_host && callbacks.to_device,
      StatusCode::kInvalidArgument,
      "HostStagingCommunicator: alloc_pinned, free_pinned, to_host and to_device are all required");
  PERIGEE_REQUIRE(chunk_bytes >= sizeof(double), StatusCode::kInvalidArgument,
                  "HostStagingCommunicator: chunk_bytes ", chunk_bytes,
                  " is smaller than one element (8 bytes)");
  std::unique_ptr<HostStagingCommunicator> c(new HostStagingCommunicator());
  c->name_ = str_cat(host->name(), "+staging");
  c->host_ = std::move(host);
  c->callbacks_ = std::move(callbacks);
  c->chunk_bytes_ = chunk_bytes;
  *out = std::move(c);
  return Status::ok();
}

HostStagingCommunicator::~HostStagingCommunicator() {
  // Started all-reduces still own their blocks: let them finish first (errors cannot be reported
  // from here; the copies back are skipped, the device buffers may be gone).
  if (!in_flight_.empty() && !host_failed_) host_failed_ = !host_->wait_all().is_ok();
  // A collective that failed (a deadline that expired, say) may still be in the host communicator's
  // hands, writing into its buffers until the job ends: that pinned memory is left allocated.
  if (host_failed_) return;
  if (staging_ != nullptr) callbacks_.free_pinned(staging_);
  for (Block& b : blocks_) callbacks_.free_pinned(b.data);
}

Status HostStagingCommunicator::host_call(Status s) {
  if (!s.is_ok()) host_failed_ = true;
  return s;
}

size_t HostStagingCommunicator::overlap_pinned_bytes() const {
  size_t total = 0;
  for (const Block& b : blocks_) total += b.bytes;
  return total;
}

Status HostStagingCommunicator::idle(const char* op) const {
  PERIGEE_REQUIRE(in_flight_.empty(), StatusCode::kInternal, name_, " ", op, ": ", in_flight_.size(),
                  " overlapped all-reduce chunk(s) are pending: call wait_all() first");
  return Status::ok();
}

Status HostStagingCommunicator::start_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                                 ReduceOp op) {
  if (!host_->overlaps()) return all_reduce(send, recv, count, type, op);
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  if (count == 0) return Status::ok();
  const size_t elem = data_type_size(type);
  const size_t chunk = std::min(count, std::max<size_t>(1, chunk_bytes_ / elem));
  for (size_t off = 0; off < count; off += chunk) {
    const size_t bytes = std::min(chunk, count - off) * elem;
    const size_t slot = in_flight_.size();
    if (slot == blocks_.size()) blocks_.emplace_back();
    Block& b = blocks_[slot];
    if (b.bytes < bytes) {
      if (b.data != nullptr && !host_failed_) callbacks_.free_pinned(b.data);
      b = Block{};
      PERIGEE_CHECK(callbacks_.alloc_pinned(&b.data, bytes));
      PERIGEE_REQUIRE(b.data != nullptr, StatusCode::kOutOfMemory, "HostStagingCommunicator: alloc_pinned(",
                      bytes, " bytes) returned no memory");
      b.bytes = bytes;
    }
    PERIGEE_CHECK(callbacks_.to_host(b.data, byte_ptr(send, off * elem), bytes));
    PERIGEE_CHECK(host_call(host_->start_all_reduce(b.data, b.data, bytes / elem, type, op)));
    in_flight_.push_back(InFlight{byte_ptr(recv, off * elem), bytes});
  }
  return Status::ok();
}

Status HostStagingCommunicator::progress() {
  PERIGEE_CHECK(host_call(host_->progress()));
  return Status::ok();
}

Status HostStagingCommunicator::wait_all() {
  if (in_flight_.empty()) return Status::ok();
  std::vector<InFlight> done;
  done.swap(in_flight_);
  PERIGEE_CHECK(host_call(host_->wait_all()));
  for (size_t i = 0; i < done.size(); ++i) {
    PERIGEE_CHECK(callbacks_.to_device(done[i].recv, blocks_[i].data, done[i].bytes));
  }
  return Status::ok();
}

Status HostStagingCommunicator::ensure_staging(size_t bytes) {
  if (bytes <= staging_bytes_) return Status::ok();
  if (staging_ != nullptr && !host_failed_) callbacks_.free_pinned(staging_);
  staging_ = nullptr;
  staging_bytes_ = 0;
  void* p = nullptr;
  PERIGEE_CHECK(callbacks_.alloc_pinned(&p, bytes));
  PERIGEE_REQUIRE(p != nullptr, StatusCode::kOutOfMemory, "HostStagingCommunicator: alloc_pinned(", bytes,
                  " bytes) returned no memory");
  staging_ = p;
  staging_bytes_ = bytes;
  return Status::ok();
}

Status HostStagingCommunicator::all_reduce(const void* send, void* recv, size_t count, DataType type,
                                           ReduceOp op) {
  PERIGEE_CHECK(idle("all_reduce"));
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  if (count == 0) return Status::ok();
  const size_t elem = data_type_size(type);
  const size_t chunk = std::min(count, std::max<size_t>(1, chunk_bytes_ / elem));
  PERIGEE_CHECK(ensure_staging(chunk * elem));
  for (size_t off = 0; off < count; off += chunk) {
    const size_t n = std::min(chunk, count - off);
    PERIGEE_CHECK(callbacks_.to_host(staging_, byte_ptr(send, off * elem), n * elem));
    PERIGEE_CHECK(host_call(host_->all_reduce(staging_, staging_, n, type, op)));
    PERIGEE_CHECK(callbacks_.to_device(byte_ptr(recv, off * elem), staging_, n * elem));
  }
  return Status::ok();
}

Status HostStagingCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  PERIGEE_CHECK(idle("broadcast"));
  PERIGEE_REQUIRE(root >= 0 && root < size(), StatusCode::kInvalidArgument, "broadcast: root ", root,
                  " outside [0, ", size(), ")");
  if (count == 0) return Status::ok();
  const size_t elem = data_type_size(type);
  const size_t chunk = std::min(count, std::max<size_t>(1, chunk_bytes_ / elem));
  const bool is_root = rank() == root;
  PERIGEE_CHECK(ensure_staging(chunk * elem));
  for (size_t off = 0; off < count; off += chunk) {
    const size_t n = std::min(chunk, count - off);
    if (is_root) PERIGEE_CHECK(callbacks_.to_host(staging_, byte_ptr(buffer, off * elem), n * elem));
    PERIGEE_CHECK(host_call(host_->broadcast(staging_, n, type, root)));
    if (!is_root) PERIGEE_CHECK(callbacks_.to_device(byte_ptr(buffer, off * elem), staging_, n * elem));
  }
  return Status::ok();
}

Status HostStagingCommunicator::all_gather(const void* send, void* recv, size_t count, DataType type) {
  PERIGEE_CHECK(idle("all_gather"));
  if (count == 0) return Status::ok();
  const size_t elem = data_type_size(type);
  const size_t p = static_cast<size_t>(size());
  // Staging layout per chunk of n elements: [own n | gathered p * n].
  const size_t chunk = std::min(count, std::max<size_t>(1, chunk_bytes_ / ((p + 1) * elem)));
  PERIGEE_CHECK(ensure_staging((p + 1) * chunk * elem));
  char* own = static_cast<char*>(staging_);
  char* gathered = own + chunk * elem;
  for (size_t off = 0; off < count; off += chunk) {
    const size_t n = std::min(chunk, count - off);
    PERIGEE_CHECK(callbacks_.to_host(own, byte_ptr(send, off * elem), n * elem));
    PERIGEE_CHECK(host_call(host_->all_gather(own, gathered, n, type)));
    if (n == count) {
      // Unchunked: the blocks of all ranks are contiguous on the device too.
      PERIGEE_CHECK(callbacks_.to_device(recv, gathered, p * n * elem));
      continue;
    }
    for (size_t r = 0; r < p; ++r) {
      PERIGEE_CHECK(
          callbacks_.to_device(byte_ptr(recv, (r * count + off) * elem), gathered + r * n * elem, n * elem));
    }
  }
  return Status::ok();
}

Status HostStagingCommunicator::barrier() {
  PERIGEE_CHECK(idle("barrier"));
  PERIGEE_CHECK(host_->barrier());
  return Status::ok();
}

}  // namespace perigee::collectives
