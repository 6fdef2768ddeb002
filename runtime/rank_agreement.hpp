// Rank agreement: before a data-parallel job trains, every rank must be about to run the same job.
// Each rank reads its own config file and overrides (one file per node image) and picks its own
// device, and nothing else checks that they match: a rank with another model size breaks the
// gradient all-reduce inside MPI, and one with another learning rate, token file or backend trains
// quietly apart (the replicas drift until the cross-replica digests disagree).
//
// describe_job lists what decides the math and the data, as "key" -> "value":
//   - every key of the resolved config (`section.key`, JSON values) except the node-local ones,
//     kNodeLocalKeys: the config file's path, CPU threads, the memory check, the progress bar, the paths of
//     the run folder, the checkpoint folder and the input files (a node may mount them elsewhere), and
//     device.device (what it chose is job.backend);
//   - job.backend: "cpu", or "cuda sm_XY" (another GPU architecture runs other kernels);
//   - job.train_data, job.val_data: each token file's count, vocabulary and CRC-32 from its header
//     ("missing: PATH" or "unreadable: PATH" are values too, so a rank that lacks its file is named
//     with the path it looked at; where every rank lacks it alike the trainer reports the file; the
//     validation file is "unused" without validation);
//   - job.fault_plan, job.links_file: the size and CRC-32 of the fault plan and of a topology file
//     (a plan decides which collectives a rank runs);
//   - job.checkpoint_dir: whether [checkpoint] dir is set (only rank 0 writes there).
// check_ranks_agree gathers the descriptions on rank 0 and fails every rank when they differ; rank 0's
// message names each differing key with its values and the ranks that hold them, e.g.
//   train.lr: 0.001 on ranks 0, 2-3; 0.002 on rank 1
#pragma once

#include <mpi.h>

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"
#include "runtime/config.hpp"

namespace perigee::runtime {

using JobDescription = std::map<std::string, std::string>;

inline constexpr std::array<std::string_view, 11> kNodeLocalKeys = {
    "source",          "device.device", "device.threads", "device.memory_check", "run.progress",  "run.dir",
    "data.train_file", "data.val_file", "fault.plan",     "links.file",          "checkpoint.dir"};

// The job as this rank sees it. `backend`: DeviceSelection::kind ("cpu", "cuda sm_90").
JobDescription describe_job(const Config& config, const std::string& backend);

// "" when every rank's description is the same; otherwise one line per differing key (the first
// `max_keys` in key order, then how many more), values grouped with their ranks.
std::string describe_disagreement(const std::vector<JobDescription>& ranks, size_t max_keys = 8);

// "0, 2-4, 7": ascending ranks with runs as ranges.
std::string rank_list(const std::vector<int>& ranks);

// Collective over `comm`. Rank 0 gets the message of describe_disagreement; the other ranks a short
// error pointing to it. All return ok when the jobs agree.
Status check_ranks_agree(const JobDescription& mine, MPI_Comm comm);

}  // namespace perigee::runtime
