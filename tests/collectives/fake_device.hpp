// FakeDevice: host memory standing in for device memory behind HostStagingCommunicator, with
// counters, so the staging logic (chunks, pinned buffers, copies, failures) runs on the CPU.
#pragma once

#include <algorithm>
#include <cstring>
#include <new>

#include "collectives/staging_communicator.hpp"

namespace perigee::collectives {

struct FakeDevice {
  int allocs = 0;
  int frees = 0;
  int to_host_calls = 0;
  int to_device_calls = 0;
  size_t max_alloc = 0;
  int fail_to_host_at = -1;  // 0-based index of the to_host call that fails, -1 = never

  StagingCallbacks callbacks() {
    StagingCallbacks cb;
    cb.alloc_pinned = [this](void** p, size_t bytes) -> Status {
      ++allocs;
      max_alloc = std::max(max_alloc, bytes);
      *p = ::operator new(bytes);
      return Status::ok();
    };
    cb.free_pinned = [this](void* p) {
      ++frees;
      ::operator delete(p);
    };
    cb.to_host = [this](void* host, const void* dev, size_t bytes) -> Status {
      PERIGEE_REQUIRE(to_host_calls++ != fail_to_host_at, StatusCode::kCudaError, "injected copy failure");
      std::memcpy(host, dev, bytes);
      return Status::ok();
    };
    cb.to_device = [this](void* dev, const void* host, size_t bytes) -> Status {
      ++to_device_calls;
      std::memcpy(dev, host, bytes);
      return Status::ok();
    };
    return cb;
  }
};

}  // namespace perigee::collectives
