// EmulatedLinkCommunicator: a Communicator whose messages travel over emulated laser links.
// Data moves between real MPI ranks (point-to-point); each collective runs as a schedule of
// transfers (collectives/algorithms) and every transfer is delayed as its route over the
// constellation at that moment dictates (per-hop latency, bytes / bandwidth, contention), computed
// by the deterministic timing model (algorithms/timing.hpp) that every rank evaluates identically.
//
// Emulated time: seconds since the constellation epoch. It advances with wall time divided by
// time_scale (time_scale 0.01: one emulated second takes 10 ms), so a 95-minute orbit or a 6.58 ms
// hop can run fast in tests. Each collective starts at the latest emulated "now" over the ranks
// (one small MPI_Allreduce of the clocks, not itself delayed), so all ranks agree on its timeline;
// a rank then sleeps until the emulated arrival of each message it receives.
//
// Failure: a link that is down when a round starts is routed around when the graph allows; when no
// route exists every rank returns the same kUnavailable error ("no route from rank 3 (sat 17) to
// rank 4 (sat 18) at t=...: links ... down") at the same round, so nothing hangs. A peer that dies
// is caught by the MPI deadline (timeout_s), as in MpiCommunicator. The deadline counts only waiting
// beyond the emulated delays: a rank whose peer is still sleeping until a modelled arrival (a slow
// link, a tree's idle rounds) gets that time on top of timeout_s, so a slow link does not time out
// healthy peers.
//
// Overlap (the gradient buckets): start_all_reduce hands the all-reduce to a worker thread of this
// communicator (BackgroundQueue: one at a time, in order) and returns, so the backward pass goes on
// computing while the schedule's rounds wait for their emulated arrivals, as a satellite's laser
// terminal moves data while its GPU computes. Each overlapped all-reduce runs exactly as a blocking
// one would (same schedule, same emulated start rule, same result). wait_all() waits for them and
// returns the first error; the others are refused with kInternal while any is pending. The worker
// makes MPI calls while the caller's thread may make its own, so this needs MPI_THREAD_MULTIPLE
// (collectives/mpi_init.hpp); under a lower thread level overlaps() is false and start_all_reduce
// is the blocking all_reduce.
#pragma once

#include <mpi.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/algorithms/route.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "collectives/algorithms/timing.hpp"
#include "collectives/background_queue.hpp"
#include "collectives/communicator.hpp"
#include "collectives/mpi_communicator.hpp"

namespace perigee::collectives {

struct EmulationOptions {
  algorithms::Algorithm algorithm = algorithms::Algorithm::kAuto;
  algorithms::ScheduleParams shape;  // grid_x/grid_y/ranks_per_node (ranks, count filled per call)
  double time_scale = 1.0;           // wall seconds per emulated second
  double t0_s = 0.0;                 // emulated time at creation (orbit phase)
  double timeout_s = 60.0;           // wall deadline of each MPI wait (dead peer)
  algorithms::TimingOptions timing;  // software overhead, reduction cost in the model
};

// What the last collective cost: emulated seconds the model charged, wall seconds it took.
struct CollectiveStats {
  std::string op;  // "all_reduce", "broadcast", ...
  algorithms::Algorithm algorithm = algorithms::Algorithm::kRing;
  size_t bytes = 0;
  double model_s = 0.0;  // emulated duration (timing model)
  double wall_s = 0.0;   // measured wall time
};

class EmulatedLinkCommunicator final : public Communicator {
 public:
  // Duplicates `base` (collective: every rank calls it). routes: rank-to-rank routes over the
  // constellation (links/rank_map.hpp make_route_fn).
  static Status create(MPI_Comm base, algorithms::RouteFn routes, const EmulationOptions& opt,
                       std::unique_ptr<EmulatedLinkCommunicator>* out);
  ~EmulatedLinkCommunicator() override;

  const char* name() const override { return "links"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // all_reduce runs the configured algorithm (auto: cheapest predicted for this size at this
  // time); broadcast and all_gather run ring schedules; kNative uses MPI's own collective with the
  // ring schedule's emulated delay. Integer and floating sums are exact per the schedule's order.
  Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status broadcast(void* buffer, size_t count, DataType type, int root) override;
  Status all_gather(const void* send, void* recv, size_t count, DataType type) override;
  Status barrier() override;

  // Overlapped all-reduce on the worker thread (see the top of this file).
  Status start_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status progress() override;
  Status wait_all() override;
  bool overlaps() const override { return thread_multiple_; }
  // Overlapped all-reduces started and not yet finished.
  size_t pending() { return engine_.pending(); }

  // All-reduce with an explicit algorithm (benchmarks compare them on one communicator).
  Status all_reduce_with(algorithms::Algorithm a, const void* send, void* recv, size_t count, DataType type,
                         ReduceOp op);

  // Emulated seconds since the constellation epoch, now.
  double now_s() const;
  // The statistics of the last finished collective and the totals (overlapped ones included once
  // they finished).
  CollectiveStats last() const;
  double total_model_s() const;
  double modelled_seconds() const override { return total_model_s(); }
  // The deadline of the MPI messages underneath (EmulationOptions::timeout_s at creation); the links'
  // modelled delays are granted on top of it.
  double timeout_s() const override { return mpi_->timeout_s(); }
  Status set_timeout(double timeout_s) override { return mpi_->set_timeout(timeout_s); }
  double total_wall_s() const;
  const EmulationOptions& options() const { return opt_; }
  const algorithms::RouteFn& routes() const { return routes_; }

 private:
  EmulatedLinkCommunicator() = default;
  // kInternal while overlapped all-reduces are pending (collectives must not interleave).
  Status idle(const char* op);
  // all_reduce_with without the idle check: the worker thread runs this.
  Status run_all_reduce(algorithms::Algorithm a, const void* send, void* recv, size_t count, DataType type,
                        ReduceOp op);
  // Adds one finished collective to the statistics.
  void record(const CollectiveStats& s);
  // Emulated start time every rank agrees on (max of the ranks' clocks).
  Status agree_start(double* t0_s);
  // Schedule for (algorithm, count, pipeline chunks), built once and cached.
  Status schedule_for(algorithms::Algorithm a, const algorithms::ScheduleParams& params,
                      const algorithms::Schedule** out);
  // Runs `s` on buf (this rank's part; every rank runs the same schedule) as the timeline says.
  Status execute(const algorithms::Schedule& s, const algorithms::Timeline& tl, char* buf, DataType type,
                 ReduceOp op, const char* what);
  // Sleeps until the wall time of emulated time t_s.
  void sleep_until_emulated(double t_s) const;
  // Wall seconds from now until emulated time t_s (0 when it has passed): the grace of an MPI wait
  // on peers that sleep until t_s before they post their side.
  double wall_seconds_until(double t_s) const;
  // Model + execute + stats for one scheduled collective.
  Status run_collective(const algorithms::Schedule& s, char* buf, DataType type, ReduceOp op,
                        const char* what, double t0_s, double wall_start);

  // Message buffers of collectives that failed in mpi_->wait (a timeout): their requests stay with
  // MPI, which writes into them if the late peer shows up. They are never freed, not even by the
  // destructor (MPI outlives this object), as HostStagingCommunicator leaves its pinned memory.
  std::vector<std::vector<char>>* abandoned_ = nullptr;
  void abandon(std::vector<std::vector<char>>* buffers);

  std::unique_ptr<MpiCommunicator> mpi_;
  int rank_ = 0;
  int size_ = 1;
  algorithms::RouteFn routes_;
  EmulationOptions opt_;
  double wall_epoch_ = 0.0;  // MPI_Wtime at creation
  // Emulated time by which every rank has left the last collective (its timeline's end): a rank that
  // left earlier waits for the others in the next start-time all-reduce, and that wait is not theirs
  // to be blamed for.
  double settle_s_ = 0.0;
  bool thread_multiple_ = false;  // MPI_THREAD_MULTIPLE: start_all_reduce may use the worker
  mutable std::mutex stats_mu_;   // the worker records while the caller may read
  CollectiveStats last_;
  double total_model_s_ = 0.0;
  double total_wall_s_ = 0.0;
  std::map<std::tuple<int, size_t, int>, algorithms::Schedule> cache_;   // (algorithm, count, chunks)
  std::map<std::pair<int, size_t>, algorithms::Schedule> gather_cache_;  // (kind/root, count)
  // Last member: destroyed first, so pending all-reduces finish while everything they use exists.
  BackgroundQueue engine_;
};

}  // namespace perigee::collectives
