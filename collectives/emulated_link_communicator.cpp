#include "collectives/emulated_link_communicator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "collectives/algorithms/cost_model.hpp"
#include "collectives/bf16_reduce.hpp"
#include "collectives/host_reduce.hpp"

namespace perigee::collectives {
namespace {

using algorithms::Algorithm;
using algorithms::Schedule;
using algorithms::Timeline;
using algorithms::Transfer;

// Largest single MPI message; bigger slices go as several messages (matched in order).
constexpr size_t kMaxMessageBytes = size_t{1} << 30;
constexpr int kTagSpace = 32768;  // MPI guarantees tags up to 32767

Status combine_bytes(char* dst, const char* src, size_t n, DataType type, ReduceOp op) {
  switch (type) {
    case DataType::kFloat32:
      host_combine(reinterpret_cast<float*>(dst), reinterpret_cast<const float*>(src), n, op);
      return Status::ok();
    case DataType::kFloat64:
      host_combine(reinterpret_cast<double*>(dst), reinterpret_cast<const double*>(src), n, op);
      return Status::ok();
    case DataType::kInt32:
      host_combine(reinterpret_cast<int32_t*>(dst), reinterpret_cast<const int32_t*>(src), n, op);
      return Status::ok();
    case DataType::kInt64:
      host_combine(reinterpret_cast<int64_t*>(dst), reinterpret_cast<const int64_t*>(src), n, op);
      return Status::ok();
    case DataType::kBFloat16:
      bf16_combine(reinterpret_cast<uint16_t*>(dst), reinterpret_cast<const uint16_t*>(src), n, op);
      return Status::ok();
    case DataType::kUInt8:
      break;
  }
  return make_error(StatusCode::kInvalidArgument, "links: reductions over ", data_type_name(type),
                    " are not supported (float32, float64, bfloat16, int32, int64)");
}

// The all-reduce arguments the links refuse (the same on every rank).
Status check_reduction(DataType type, ReduceOp op) {
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  PERIGEE_REQUIRE(type != DataType::kUInt8, StatusCode::kInvalidArgument,
                  "links all_reduce: uint8 reductions are not supported");
  return Status::ok();
}

// Binomial-tree broadcast from `root`: in round k, relative rank v < 2^k sends the whole buffer to
// v + 2^k. lg p rounds; every transfer overwrites.
Schedule broadcast_schedule(int p, size_t count, int root) {
  Schedule s;
  s.algorithm = Algorithm::kRing;  // not an all-reduce; the field is informative only
  s.ranks = p;
  s.count = count;
  for (int span = 1; span < p && count > 0; span *= 2) {  // nothing to send: no rounds, no link time
    algorithms::Round r;
    for (int v = 0; v < span && v + span < p; ++v) {
      r.transfers.push_back(Transfer{(v + root) % p, (v + span + root) % p, 0, count, false});
    }
    s.rounds.push_back(std::move(r));
  }
  return s;
}

// Ring all-gather over p blocks of `block` elements: in round k rank r forwards block (r - k) mod p
// to r + 1. p - 1 rounds; every transfer overwrites.
Schedule all_gather_schedule(int p, size_t block) {
  Schedule s;
  s.algorithm = Algorithm::kRing;
  s.ranks = p;
  s.count = block * static_cast<size_t>(p);
  for (int k = 0; k + 1 < p && block > 0; ++k) {
    algorithms::Round r;
    for (int src = 0; src < p; ++src) {
      const size_t b = static_cast<size_t>(((src - k) % p + p) % p);
      r.transfers.push_back(Transfer{src, (src + 1) % p, b * block, block, false});
    }
    s.rounds.push_back(std::move(r));
  }
  return s;
}

}  // namespace

Status EmulatedLinkCommunicator::create(MPI_Comm base, algorithms::RouteFn routes,
                                        const EmulationOptions& opt,
                                        std::unique_ptr<EmulatedLinkCommunicator>* out) {
  PERIGEE_REQUIRE(routes != nullptr, StatusCode::kInvalidArgument, "links: no route function given");
  PERIGEE_REQUIRE(std::isfinite(opt.time_scale) && opt.time_scale > 0.0, StatusCode::kInvalidArgument,
                  "links: time_scale must be > 0 (wall seconds per emulated second), got ", opt.time_scale);
  PERIGEE_REQUIRE(std::isfinite(opt.t0_s), StatusCode::kInvalidArgument, "links: t0_s must be finite");
  std::unique_ptr<EmulatedLinkCommunicator> c(new EmulatedLinkCommunicator());
  PERIGEE_CHECK(MpiCommunicator::create(base, &c->mpi_, opt.timeout_s));
  c->rank_ = c->mpi_->rank();
  c->size_ = c->mpi_->size();
  c->routes_ = std::move(routes);
  c->opt_ = opt;
  c->opt_.shape.ranks = c->size_;
  int provided = MPI_THREAD_SINGLE;
  PERIGEE_CHECK_MPI(MPI_Query_thread(&provided));
  c->thread_multiple_ = provided >= MPI_THREAD_MULTIPLE;
  // Fail at creation (on every rank alike) when the algorithm cannot run on this world size.
  if (opt.algorithm != Algorithm::kAuto && opt.algorithm != Algorithm::kNative) {
    algorithms::ScheduleParams probe = c->opt_.shape;
    probe.count = static_cast<size_t>(c->size_);
    Schedule s;
    PERIGEE_CHECK(algorithms::build_allreduce_schedule(opt.algorithm, probe, &s));
  }
  PERIGEE_CHECK(c->mpi_->barrier());
  c->wall_epoch_ = MPI_Wtime();
  *out = std::move(c);
  return Status::ok();
}

EmulatedLinkCommunicator::~EmulatedLinkCommunicator() = default;

double EmulatedLinkCommunicator::now_s() const {
  return opt_.t0_s + (MPI_Wtime() - wall_epoch_) / opt_.time_scale;
}

void EmulatedLinkCommunicator::sleep_until_emulated(double t_s) const {
  const double target = wall_epoch_ + (t_s - opt_.t0_s) * opt_.time_scale;
  while (true) {
    const double left = target - MPI_Wtime();
    if (left <= 0.0) return;
    if (left > 2e-3) {
      std::this_thread::sleep_for(std::chrono::duration<double>(left - 1e-3));
    } else if (left > 50e-6) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
}

double EmulatedLinkCommunicator::wall_seconds_until(double t_s) const {
  const double target = wall_epoch_ + (t_s - opt_.t0_s) * opt_.time_scale;
  return std::max(0.0, target - MPI_Wtime());
}

void EmulatedLinkCommunicator::abandon(std::vector<std::vector<char>>* buffers) {
  if (abandoned_ == nullptr) abandoned_ = new std::vector<std::vector<char>>();  // never deleted
  for (auto& b : *buffers) abandoned_->push_back(std::move(b));  // the heap blocks stay where they are
  buffers->clear();
}

Status EmulatedLinkCommunicator::agree_start(double* t0_s) {
  // On the heap, not the stack: a timed-out all-reduce leaves MPI holding these addresses.
  std::vector<std::vector<char>> cells(1, std::vector<char>(2 * sizeof(double)));
  double* mine = reinterpret_cast<double*>(cells[0].data());
  mine[0] = now_s();
  // Ranks leave a collective when their own part is due (its timeline's rank_ready_s): the others
  // may join this one up to the last collective's end later.
  std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
  PERIGEE_CHECK_MPI(MPI_Iallreduce(&mine[0], &mine[1], 1, MPI_DOUBLE, MPI_MAX, mpi_->comm(), &requests[0]));
  const Status s =
      mpi_->wait(&requests, "links start-time all_reduce", sizeof(double), wall_seconds_until(settle_s_));
  if (!s.is_ok()) {
    abandon(&cells);
    return s;
  }
  *t0_s = mine[1];
  return Status::ok();
}

Status EmulatedLinkCommunicator::schedule_for(Algorithm a, const algorithms::ScheduleParams& params,
                                              const Schedule** out) {
  const auto key = std::make_tuple(static_cast<int>(a), params.count, params.pipeline_chunks);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    Schedule s;
    PERIGEE_CHECK(algorithms::build_allreduce_schedule(a, params, &s));
    if (cache_.size() > 64) cache_.clear();  // bounded: training uses a handful of sizes
    it = cache_.emplace(key, std::move(s)).first;
  }
  *out = &it->second;
  return Status::ok();
}

Status EmulatedLinkCommunicator::execute(const Schedule& s, const Timeline& tl, char* buf, DataType type,
                                         ReduceOp op, const char* what) {
  const size_t elem = data_type_size(type);
  MPI_Comm comm = mpi_->comm();
  std::vector<std::vector<char>> sends;
  std::vector<std::vector<char>> recvs;
  std::vector<size_t> incoming;  // transfer indices this rank receives, in schedule order
  std::vector<MPI_Request> requests;
  // A failed post leaves the earlier ones of its round with MPI: their buffers must outlive them.
  auto give_up = [&](Status e) {
    abandon(&sends);
    abandon(&recvs);
    return std::move(e.add_trace(__FILE__, __LINE__));
  };
  // Every rank has posted round k by the latest arrival of the rounds before it (each sleeps until
  // its own arrivals first): waiting up to then is the links' delay, not a lost peer.
  double posted_by = tl.start_s;
  for (size_t k = 0; k < s.rounds.size(); ++k) {
    const auto& transfers = s.rounds[k].transfers;
    const int tag = static_cast<int>(k % kTagSpace);
    sends.clear();
    recvs.clear();
    incoming.clear();
    requests.clear();
    // Senders snapshot their slices first (round semantics: values as at the round's start).
    for (const Transfer& t : transfers) {
      if (t.src != rank_) continue;
      const char* from = buf + t.offset * elem;
      sends.emplace_back(from, from + t.count * elem);
    }
    size_t next_send = 0;
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      const size_t bytes = t.count * elem;
      if (t.src == rank_) {
        const char* data = sends[next_send++].data();
        if (t.dst == rank_) continue;  // a self-transfer moves no bytes over a link
        for (size_t off = 0; off < bytes; off += kMaxMessageBytes) {
          const int n = static_cast<int>(std::min(kMaxMessageBytes, bytes - off));
          requests.push_back(MPI_REQUEST_NULL);
          if (Status e = mpi_status(MPI_Isend(data + off, n, MPI_BYTE, t.dst, tag, comm, &requests.back()),
                                    "MPI_Isend");
              !e.is_ok())
            return give_up(std::move(e));
        }
      }
      if (t.dst == rank_) {
        incoming.push_back(i);
        recvs.emplace_back(bytes);
        if (t.src == rank_) {
          std::memcpy(recvs.back().data(), sends[next_send - 1].data(), bytes);
          continue;
        }
        char* into = recvs.back().data();
        for (size_t off = 0; off < bytes; off += kMaxMessageBytes) {
          const int n = static_cast<int>(std::min(kMaxMessageBytes, bytes - off));
          requests.push_back(MPI_REQUEST_NULL);
          if (Status e = mpi_status(MPI_Irecv(into + off, n, MPI_BYTE, t.src, tag, comm, &requests.back()),
                                    "MPI_Irecv");
              !e.is_ok())
            return give_up(std::move(e));
        }
      }
    }
    size_t round_bytes = 0;
    for (const Transfer& t : transfers) {
      if (t.src == rank_ || t.dst == rank_) round_bytes += t.count * elem;
    }
    if (Status w = mpi_->wait(&requests, what, round_bytes, wall_seconds_until(posted_by)); !w.is_ok()) {
      abandon(&sends);
      abandon(&recvs);
      return w;
    }
    // The data is here; it is due when the emulated links would have delivered it.
    double due = tl.start_s;
    for (size_t i : incoming) due = std::max(due, tl.rounds[k][i].arrive_s);
    for (const algorithms::TransferTime& t : tl.rounds[k]) posted_by = std::max(posted_by, t.arrive_s);
    sleep_until_emulated(due);
    for (size_t j = 0; j < incoming.size(); ++j) {
      const Transfer& t = transfers[incoming[j]];
      char* into = buf + t.offset * elem;
      if (t.reduce) {
        PERIGEE_CHECK(combine_bytes(into, recvs[j].data(), t.count, type, op));
      } else {
        std::memcpy(into, recvs[j].data(), t.count * elem);
      }
    }
  }
  sleep_until_emulated(tl.rank_ready_s[static_cast<size_t>(rank_)]);
  return Status::ok();
}

Status EmulatedLinkCommunicator::run_collective(const Schedule& s, char* buf, DataType type, ReduceOp op,
                                                const char* what, double t0_s, double wall_start) {
  Timeline tl;
  Status modelled = algorithms::simulate_schedule(s, data_type_size(type), routes_, t0_s, opt_.timing, &tl);
  if (!modelled.is_ok()) {
    // Every rank computed the same timeline, so every rank fails here, at the same collective.
    return modelled.add_trace(__FILE__, __LINE__);
  }
  PERIGEE_CHECK(execute(s, tl, buf, type, op, what));
  settle_s_ = tl.end_s;
  record(CollectiveStats{what, s.algorithm, s.count * data_type_size(type), tl.duration_s(),
                         MPI_Wtime() - wall_start});
  return Status::ok();
}

void EmulatedLinkCommunicator::record(const CollectiveStats& s) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  last_ = s;
  total_model_s_ += s.model_s;
  total_wall_s_ += s.wall_s;
}

CollectiveStats EmulatedLinkCommunicator::last() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return last_;
}

double EmulatedLinkCommunicator::total_model_s() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return total_model_s_;
}

double EmulatedLinkCommunicator::total_wall_s() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return total_wall_s_;
}

Status EmulatedLinkCommunicator::idle(const char* op) {
  const size_t n = engine_.pending();
  PERIGEE_REQUIRE(n == 0, StatusCode::kInternal, "links ", op, ": ", n,
                  " overlapped all-reduce(s) are pending: call wait_all() first");
  return Status::ok();
}

Status EmulatedLinkCommunicator::start_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                                  ReduceOp op) {
  if (!thread_multiple_) return all_reduce(send, recv, count, type, op);
  // Argument errors come back now, on every rank alike; the collective itself runs on the worker.
  PERIGEE_CHECK(check_reduction(type, op));
  PERIGEE_CHECK(engine_.poll());  // an earlier one failed: report it before starting more
  const Algorithm a = opt_.algorithm;
  PERIGEE_CHECK(engine_.submit(
      [this, a, send, recv, count, type, op] { return run_all_reduce(a, send, recv, count, type, op); }));
  return Status::ok();
}

Status EmulatedLinkCommunicator::progress() {
  PERIGEE_CHECK(engine_.poll());
  return Status::ok();
}

Status EmulatedLinkCommunicator::wait_all() {
  PERIGEE_CHECK(engine_.drain());
  return Status::ok();
}

Status EmulatedLinkCommunicator::all_reduce(const void* send, void* recv, size_t count, DataType type,
                                            ReduceOp op) {
  return all_reduce_with(opt_.algorithm, send, recv, count, type, op);
}

Status EmulatedLinkCommunicator::all_reduce_with(Algorithm a, const void* send, void* recv, size_t count,
                                                 DataType type, ReduceOp op) {
  PERIGEE_CHECK(idle("all_reduce"));
  PERIGEE_CHECK(run_all_reduce(a, send, recv, count, type, op));
  return Status::ok();
}

Status EmulatedLinkCommunicator::run_all_reduce(Algorithm a, const void* send, void* recv, size_t count,
                                                DataType type, ReduceOp op) {
  PERIGEE_CHECK(mpi_->usable());
  PERIGEE_CHECK(check_reduction(type, op));
  const double wall_start = MPI_Wtime();
  const size_t elem = data_type_size(type);
  double t0 = 0.0;
  PERIGEE_CHECK(agree_start(&t0));
  algorithms::ScheduleParams params = opt_.shape;
  params.ranks = size_;
  params.count = count;
  if (a == Algorithm::kAuto) {
    std::vector<algorithms::Prediction> ranked;
    PERIGEE_CHECK(algorithms::rank_algorithms(params, elem, routes_, t0, opt_.timing.overhead_s, &ranked));
    PERIGEE_REQUIRE(!ranked.empty(), StatusCode::kUnavailable, "links: no all-reduce algorithm fits ", size_,
                    " ranks");
    a = ranked.front().algorithm;
    if (params.pipeline_chunks == 0) params.pipeline_chunks = ranked.front().pipeline_chunks;
  } else if (a == Algorithm::kDoubleBinaryTree && params.pipeline_chunks == 0 && count > 0) {
    // The chunk count that suits these links now (few on long hops, many on short ones).
    algorithms::Prediction pred;
    PERIGEE_CHECK(algorithms::predict_allreduce(a, params, elem, routes_, t0, opt_.timing.overhead_s, &pred));
    params.pipeline_chunks = pred.pipeline_chunks;
  }
  if (a == Algorithm::kNative) {
    // The backend's own collective moves the data; the links charge what a ring would take.
    const Schedule* ring = nullptr;
    PERIGEE_CHECK(schedule_for(Algorithm::kRing, params, &ring));
    Timeline tl;
    PERIGEE_CHECK(algorithms::simulate_schedule(*ring, elem, routes_, t0, opt_.timing, &tl));
    PERIGEE_CHECK(mpi_->all_reduce(send, recv, count, type, op));
    sleep_until_emulated(tl.end_s);
    settle_s_ = tl.end_s;
    record(CollectiveStats{"all_reduce", Algorithm::kNative, count * elem, tl.duration_s(),
                           MPI_Wtime() - wall_start});
    return Status::ok();
  }
  if (send != recv && count > 0) std::memcpy(recv, send, count * elem);
  const Schedule* s = nullptr;
  PERIGEE_CHECK(schedule_for(a, params, &s));
  PERIGEE_CHECK(run_collective(*s, static_cast<char*>(recv), type, op, "all_reduce", t0, wall_start));
  if (op == ReduceOp::kAvg && size_ > 1) {
    if (type == DataType::kFloat32) {
      float* p = static_cast<float*>(recv);
      const float inv = 1.0f / static_cast<float>(size_);
      for (size_t i = 0; i < count; ++i) p[i] *= inv;
    } else if (type == DataType::kBFloat16) {
      bf16_scale(static_cast<uint16_t*>(recv), count, 1.0f / static_cast<float>(size_));
    } else {
      double* p = static_cast<double*>(recv);
      const double inv = 1.0 / static_cast<double>(size_);
      for (size_t i = 0; i < count; ++i) p[i] *= inv;
    }
  }
  return Status::ok();
}

Status EmulatedLinkCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  PERIGEE_CHECK(idle("broadcast"));
  PERIGEE_CHECK(mpi_->usable());
  PERIGEE_REQUIRE(root >= 0 && root < size_, StatusCode::kInvalidArgument, "broadcast: root ", root,
                  " outside [0, ", size_, ")");
  const double wall_start = MPI_Wtime();
  double t0 = 0.0;
  PERIGEE_CHECK(agree_start(&t0));
  const auto key = std::make_pair(-1 - root, count);
  auto it = gather_cache_.find(key);
  if (it == gather_cache_.end()) {
    if (gather_cache_.size() > 64) gather_cache_.clear();
    it = gather_cache_.emplace(key, broadcast_schedule(size_, count, root)).first;
  }
  return run_collective(it->second, static_cast<char*>(buffer), type, ReduceOp::kSum, "broadcast", t0,
                        wall_start);
}

Status EmulatedLinkCommunicator::all_gather(const void* send, void* recv, size_t count, DataType type) {
  PERIGEE_CHECK(idle("all_gather"));
  PERIGEE_CHECK(mpi_->usable());
  const double wall_start = MPI_Wtime();
  const size_t elem = data_type_size(type);
  double t0 = 0.0;
  PERIGEE_CHECK(agree_start(&t0));
  char* out = static_cast<char*>(recv);
  char* mine = out + static_cast<size_t>(rank_) * count * elem;
  if (count > 0 && mine != send) std::memmove(mine, send, count * elem);
  const auto key = std::make_pair(1, count);
  auto it = gather_cache_.find(key);
  if (it == gather_cache_.end()) {
    if (gather_cache_.size() > 64) gather_cache_.clear();
    it = gather_cache_.emplace(key, all_gather_schedule(size_, count)).first;
  }
  return run_collective(it->second, out, type, ReduceOp::kSum, "all_gather", t0, wall_start);
}

Status EmulatedLinkCommunicator::barrier() {
  PERIGEE_CHECK(idle("barrier"));
  PERIGEE_CHECK(mpi_->usable());
  // Not a plain MPI barrier: ranks leave the last collective when their own part is due, so a peer may
  // still be in its modelled delay. agree_start waits for everyone with that grace.
  double unused = 0.0;
  PERIGEE_CHECK(agree_start(&unused));
  return Status::ok();
}

}  // namespace perigee::collectives
