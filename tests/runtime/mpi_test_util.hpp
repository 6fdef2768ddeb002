// Helpers shared by the MPI tests of the trainer (tests/runtime/mpi_test_*.cpp): the world rank and
// size, scratch folders that rank 0 makes and every rank gets, the tiny model's run, a Trainer on a
// CPU backend of its own, and bit-for-bit comparisons of parameters (across ranks too).
#pragma once

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "collectives/communicator.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/random.hpp"
#include "runtime/token_file.hpp"
#include "runtime/trainer.hpp"

namespace perigee::runtime::testing {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// Runs make() on rank 0 only (it may write files the other ranks then read) and gives its string (a
// path; at most 511 characters) to every rank.
template <typename Make>
std::string rank0_string(Make make) {
  char text[512] = {0};
  if (world_rank() == 0) std::snprintf(text, sizeof(text), "%s", make().c_str());
  MPI_Bcast(text, sizeof(text), MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

// The folder <temp>/<prefix><pid>, created (one per launch when rank 0 calls it); with `empty`,
// whatever an earlier test left in it is removed first.
inline std::filesystem::path scratch_folder(const std::string& prefix, bool empty) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()));
  if (empty) std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Rank 0 makes the empty scratch folder `prefix` with train.bin (12000 random lowercase letters from
// `seed`, vocabulary 256) and `files` (name, text); every rank gets the folder.
inline std::string shared_token_folder(const std::string& prefix, uint64_t seed,
                                       const std::vector<std::pair<std::string, std::string>>& files = {}) {
  // Every rank has finished the test before: rank 0 empties the folder that test's checks may still
  // read on another rank (a checkpoint file seen missing on rank 2 failed the fault-ladder test).
  MPI_Barrier(MPI_COMM_WORLD);
  return rank0_string([&] {
    const std::filesystem::path dir = scratch_folder(prefix, /*empty=*/true);
    std::vector<int32_t> tokens(12000);
    SplitMix64 rng(seed);
    for (auto& t : tokens) t = static_cast<int32_t>(97 + rng.next() % 26);
    PERIGEE_CHECK_OR_DIE(write_token_file((dir / "train.bin").string(), tokens, 256));
    for (const auto& [name, text] : files) std::ofstream(dir / name) << text;
    return dir.string();
  });
}

// The tiny model (2 layers, 2 heads, C 32, T 16, vocabulary 256) for 10 steps of `batch_size`
// sequences from `train_file`: lr 3e-3 after 2 warmup steps, no validation, no sample.
inline Config tiny_config(const std::string& train_file, int batch_size) {
  Config c;
  c.model = ModelConfig{2, 2, 32, 16, 256, 256};
  c.train.batch_size = batch_size;
  c.train.seq_len = 16;
  c.train.steps = 10;
  c.train.lr = 3e-3;
  c.train.warmup_steps = 2;
  c.train.val_every = 0;
  c.train.sample_tokens = 0;
  c.data.train_file = train_file;
  c.data.val_file = "";
  return c;
}

// A Trainer (not yet set up) on a one-thread CPU backend of its own, writing no run folder and no
// step lines.
struct CpuTrainer {
  CpuTrainer(const Config& config, collectives::Communicator* comm)
      : trainer(config, comm, &cpu, TrainerOptions{.write_run_dir = false, .log_steps = false}) {}

  kernels::cpu::CpuBackend cpu{1};  // declared first: the trainer uses it until it is gone
  Trainer trainer;
};

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The largest |a[i] - b[i]|, in double (a and b of one size).
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

// Every rank's parameters equal rank 0's, bit for bit (the same answer on every rank; a collective).
inline bool replicas_identical(const std::vector<float>& params) {
  std::vector<float> root = params;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  int same = same_bits(root, params) ? 1 : 0, all = 0;
  MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

}  // namespace perigee::runtime::testing
