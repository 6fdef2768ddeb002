// The runtime rungs of the detection ladder (docs/faults.md); rung 1, ABFT, is fault/AbftBackend.
//   2. StepInvariants: a non-finite loss or gradient norm, or a spike against a moving window.
//   3. (Trainer) re-run of a triggered step from the unchanged state: a different result means a
//      transient fault (the re-run is kept), the same result a reproducible anomaly (batch skipped).
//   4. Replica digests: data-parallel replicas must hold bit-identical parameters and moments; a
//      minority replica is repaired from the majority (3+ replicas); with no majority, roll back.
//   5. (Trainer) rollback to the newest good checkpoint.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "collectives/communicator.hpp"
#include "core/status.hpp"
#include "runtime/gpt_model.hpp"

namespace perigee::runtime {

// The accepted steps a StepInvariants compares against, oldest first; checkpoints carry it so that
// a resume or a rollback checks spikes as the uninterrupted run would.
struct InvariantWindow {
  std::vector<double> losses, grad_norms;
};

// Equal lengths and finite values (what StepInvariants::restore accepts).
Status check_invariant_window(const InvariantWindow& w);

struct InvariantVerdict {
  bool triggered = false;
  std::string reason;  // e.g. "loss 9.1 > 4 x window mean 2.2"
};

class StepInvariants {
 public:
  StepInvariants(double loss_spike, double grad_spike, int window)
      : loss_spike_(loss_spike), grad_spike_(grad_spike), window_(window) {}

  // Checks one step's (loss, grad norm) against the window of accepted steps (no spike check until
  // the window holds `window / 2` steps, at least 1).
  InvariantVerdict check(double loss, double grad_norm) const;
  // Adds an accepted step to the window.
  void accept(double loss, double grad_norm);

  InvariantWindow window() const;
  // Replaces the window (resume, rollback), keeping its newest `window` steps. Refuses two series
  // of different lengths or a non-finite value (accept() never sees one), leaving the window as is.
  Status restore(const InvariantWindow& w);

 private:
  double loss_spike_, grad_spike_;
  size_t window_;
  std::deque<double> losses_, norms_;
};

// 64-bit digest of a host buffer (word-wise multiply-xor mix; any bit flip changes it).
uint64_t buffer_digest(const void* data, size_t bytes, uint64_t seed = 0);

struct ReplicaCheck {
  bool consistent = true;
  std::vector<int> minority;    // ranks whose state differed from the majority
  int source = -1;              // majority rank the minority was repaired from (-1: none)
  bool needs_rollback = false;  // no strict majority (e.g. 2 replicas that differ)
};

// Collective over comm: every rank digests params, adam_m, adam_v, the digests are all-gathered
// and compared. With a strict majority, the minority ranks receive the majority's state (broadcast
// from the lowest majority rank) and the check passes; without one, needs_rollback is set.
Status check_and_repair_replicas(collectives::Communicator& comm, GptModel& model, ReplicaCheck* out);

}  // namespace perigee::runtime
