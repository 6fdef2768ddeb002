#include "runtime/rank_agreement.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "collectives/mpi_communicator.hpp"
#include "core/read_file.hpp"
#include "runtime/token_file.hpp"

namespace perigee::runtime {
namespace {

bool node_local(const std::string& key) {
  return std::find(kNodeLocalKeys.begin(), kNodeLocalKeys.end(), key) != kNodeLocalKeys.end();
}

std::string hex32(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", v);
  return text;
}

// What decides a token file's tokens: its header (the CRC covers every token). A file that cannot be
// read is named with its path: the message then says which rank lacks what.
std::string token_file_fingerprint(const std::string& path) {
  if (path.empty()) return "none";
  TokenFileHeader header;
  const Status s = read_token_header(path, &header);
  if (s.code() == StatusCode::kNotFound) return str_cat("missing: ", path);
  if (!s.is_ok()) return str_cat("unreadable: ", path);
  return str_cat(header.count, " tokens, vocabulary ", header.vocab_size, ", crc32 ",
                 hex32(header.token_crc32));
}

// What decides a small input file's effect (a fault plan, a topology graph): its bytes.
std::string file_fingerprint(const std::string& path) {
  if (path.empty()) return "none";
  std::string bytes;
  const Status read = read_small_file(path, "file", &bytes);
  if (read.code() == StatusCode::kNotFound) return str_cat("missing: ", path);
  if (!read.is_ok()) return str_cat("unreadable: ", path);  // setup's own read says why
  return str_cat(bytes.size(), " bytes, crc32 ", hex32(crc32(bytes.data(), bytes.size())));
}

constexpr const char* kAbsent = "(absent)";

}  // namespace

JobDescription describe_job(const Config& config, const std::string& backend) {
  JobDescription job;
  const nlohmann::json flat = nlohmann::json::parse(config_to_json(config)).flatten();
  for (const auto& [pointer, value] : flat.items()) {
    std::string key = pointer.substr(1);  // "/train/lr" -> "train.lr"
    std::replace(key.begin(), key.end(), '/', '.');
    if (!node_local(key)) job[key] = value.dump();
  }
  job["job.backend"] = backend;
  job["job.train_data"] = token_file_fingerprint(config.data.train_file);
  job["job.val_data"] = config.train.val_every > 0 ? token_file_fingerprint(config.data.val_file) : "unused";
  job["job.fault_plan"] = file_fingerprint(config.fault.plan);
  job["job.links_file"] = config.links.topology == "file" ? file_fingerprint(config.links.file) : "unused";
  // Only rank 0 writes checkpoints; the others need to know whether a folder is set.
  job["job.checkpoint_dir"] = config.checkpoint.dir.empty() ? "<run dir>/checkpoints" : "set";
  return job;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += j == i ? str_cat(ranks[i]) : str_cat(ranks[i], "-", ranks[j]);
    i = j + 1;
  }
  return out;
}

std::string describe_disagreement(const std::vector<JobDescription>& ranks, size_t max_keys) {
  std::set<std::string> keys;  // every key any rank has
  for (const auto& job : ranks)
    for (const auto& kv : job) keys.insert(kv.first);
  std::vector<std::string> lines;
  size_t differing = 0;
  for (const std::string& key : keys) {
    // value -> ranks holding it, in the order the values first appear
    std::vector<std::pair<std::string, std::vector<int>>> values;
    for (size_t r = 0; r < ranks.size(); ++r) {
      const auto it = ranks[r].find(key);
      const std::string value = it == ranks[r].end() ? kAbsent : it->second;
      auto v = std::find_if(values.begin(), values.end(), [&](const auto& p) { return p.first == value; });
      if (v == values.end())
        values.push_back({value, {static_cast<int>(r)}});
      else
        v->second.push_back(static_cast<int>(r));
    }
    if (values.size() < 2) continue;
    if (++differing > max_keys) continue;
    std::string line = str_cat("  ", key, ":");
    for (size_t i = 0; i < values.size(); ++i) {
      line += str_cat(i == 0 ? " " : "; ", values[i].first, " on rank",
                      values[i].second.size() > 1 ? "s " : " ", rank_list(values[i].second));
    }
    lines.push_back(line);
  }
  if (differing == 0) return "";
  std::string out =
      str_cat("the ranks would run different jobs (", differing, " key(s) differ; every rank needs the same ",
              "config, token files and kind of device):");
  for (const auto& line : lines) out += "\n" + line;
  if (differing > max_keys) out += str_cat("\n  ... and ", differing - max_keys, " more key(s)");
  return out;
}

Status check_ranks_agree(const JobDescription& mine, MPI_Comm comm) {
  int rank = 0, world = 1;
  PERIGEE_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  PERIGEE_CHECK_MPI(MPI_Comm_size(comm, &world));
  const std::string text = nlohmann::json(mine).dump();
  const int length = static_cast<int>(text.size());
  // Every rank learns the total first, so a gather too large for int offsets fails on all of them.
  int64_t total = length, sum = 0;
  PERIGEE_CHECK_MPI(MPI_Allreduce(&total, &sum, 1, MPI_INT64_T, MPI_SUM, comm));
  PERIGEE_REQUIRE(sum <= INT32_MAX, StatusCode::kInternal, "job descriptions of ", world, " ranks take ", sum,
                  " bytes, more than one MPI_Gatherv carries");
  std::vector<int> lengths(rank == 0 ? world : 0), offsets(rank == 0 ? world : 0);
  PERIGEE_CHECK_MPI(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm));
  std::string all;
  if (rank == 0) {
    int offset = 0;
    for (int r = 0; r < world; ++r) {
      offsets[r] = offset;
      offset += lengths[r];
    }
    all.resize(static_cast<size_t>(sum));
  }
  PERIGEE_CHECK_MPI(MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                                MPI_CHAR, 0, comm));
  std::string message;
  if (rank == 0) {
    std::vector<JobDescription> jobs(world);
    for (int r = 0; r < world; ++r) {
      jobs[r] = nlohmann::json::parse(all.substr(offsets[r], lengths[r])).get<JobDescription>();
    }
    message = describe_disagreement(jobs);
  }
  int message_length = static_cast<int>(message.size());
  PERIGEE_CHECK_MPI(MPI_Bcast(&message_length, 1, MPI_INT, 0, comm));
  if (message_length == 0) return Status::ok();
  if (rank == 0) return make_error(StatusCode::kInvalidArgument, message);
  return make_error(StatusCode::kInvalidArgument,
                    "this rank's job differs from another rank's (rank 0's message names the keys)");
}

}  // namespace perigee::runtime
