// bench_checkpoint: checkpoint write throughput of a GPT-2 124M-shaped training state (params +
// AdamW m + v, fp32: 124.5M x 3 x 4 B = 1.49 GB at --scale 1) against the disk's sequential write
// speed measured in the same run (dd bs=1M conv=fsync), the verified read, and the stall a
// training loop sees for one checkpoint per --interval-s at a --step-ms step time, with the
// asynchronous writer off (commit inside the step loop) and on (stage, then write in the
// background). The step is simulated by a sleep, as a GPU step leaves the host CPU idle. Prints a
// table and writes JSON.
//   bench_checkpoint [--dir d] [--scale 1] [--reps 3] [--step-ms 100] [--interval-s 60]
//                    [--checkpoints 3] [--json f]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/memory_fit.hpp"
#include "checkpoint/async_writer.hpp"
#include "checkpoint/crc32c.hpp"
#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/store.hpp"
#include "runtime/cli_checks.hpp"

namespace {

using namespace perigee;
using namespace perigee::checkpoint;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double mb_per_s(uint64_t bytes, double seconds) {
  return seconds > 0 ? bytes / 1e6 / seconds : 0.0;
}

// The GPT-2 124M view table (HF names, linear weights [out, in]); --scale shrinks the layer count
// and the embedding rows proportionally.
std::vector<View> gpt2_views(double scale) {
  const int64_t C = 768;
  const int n_layer = std::max(1, static_cast<int>(std::lround(12 * scale)));
  const int64_t vocab = std::max<int64_t>(1, std::llround(50304 * scale));
  const int64_t context = std::max<int64_t>(1, std::llround(1024 * scale));
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {{"wte.weight", {vocab, C}},
                                                                      {"wpe.weight", {context, C}}};
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    shapes.push_back({p + "ln_1.weight", {C}});
    shapes.push_back({p + "ln_1.bias", {C}});
    shapes.push_back({p + "attn.c_attn.weight", {3 * C, C}});
    shapes.push_back({p + "attn.c_attn.bias", {3 * C}});
    shapes.push_back({p + "attn.c_proj.weight", {C, C}});
    shapes.push_back({p + "attn.c_proj.bias", {C}});
    shapes.push_back({p + "ln_2.weight", {C}});
    shapes.push_back({p + "ln_2.bias", {C}});
    shapes.push_back({p + "mlp.c_fc.weight", {4 * C, C}});
    shapes.push_back({p + "mlp.c_fc.bias", {4 * C}});
    shapes.push_back({p + "mlp.c_proj.weight", {C, 4 * C}});
    shapes.push_back({p + "mlp.c_proj.bias", {C}});
  }
  shapes.push_back({"ln_f.weight", {C}});
  shapes.push_back({"ln_f.bias", {C}});
  std::vector<View> views;
  uint64_t offset = 0;
  for (auto& [name, shape] : shapes) {
    views.push_back(View{name, offset, shape});
    offset += views.back().size();
  }
  return views;
}

Snapshot make_state(double scale, int64_t step) {
  Snapshot s;
  const std::vector<View> views = gpt2_views(scale);
  const uint64_t n = views.back().offset + views.back().size();
  uint32_t x = 12345;
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    Buffer b{name, views, std::vector<float>(n)};
    for (float& f : b.data) {  // incompressible-looking values, fast to generate
      x = x * 1664525u + 1013904223u;
      f = static_cast<float>(static_cast<int32_t>(x)) * 4.6566e-10f * 0.02f;
    }
    s.buffers.push_back(std::move(b));
  }
  s.meta.step = step;
  s.meta.world_size = 1;
  s.meta.rng_states = {{"init", {1337}}};
  s.meta.data_cursors = {{static_cast<uint64_t>(step) * 32}};
  s.meta.lr_schedule = LrScheduleState{"warmup_cosine", 6e-4, 0.1, 700, 19000, 6e-4};
  s.meta.model_shape = {{"n_layer", 12},   {"n_head", 12},   {"n_embd", 768},
                        {"context", 1024}, {"vocab", 50257}, {"padded_vocab", 50304}};
  s.meta.config_json = "{\"bench\": \"bench_checkpoint\"}";
  return s;
}

// `text` as one single-quoted shell word.
std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Sequential write of `mib` MiB with dd, fsync included; seconds (negative if dd failed).
double dd_seconds(const std::string& dir, uint64_t mib) {
  const std::string file = (std::filesystem::path(dir) / "dd.tmp").string();
  const std::string cmd = "dd if=/dev/zero of=" + shell_quote(file) + " bs=1M count=" + std::to_string(mib) +
                          " conv=fsync status=none";
  (void)std::system("sync");
  const auto t0 = Clock::now();
  const int rc = std::system(cmd.c_str());
  const double s = seconds_since(t0);
  std::filesystem::remove(file);
  return rc == 0 ? s : -1.0;
}

json commit_json(const CommitStats& c, uint64_t bytes) {
  return json{{"total_s", c.total_seconds},   {"write_s", c.write_seconds},
              {"crc_s", c.write.crc_seconds}, {"hdf5_s", c.write.hdf5_seconds},
              {"fsync_s", c.fsync_seconds},   {"publish_s", c.publish_seconds},
              {"file_bytes", c.file_bytes},   {"mb_per_s", mb_per_s(bytes, c.total_seconds)}};
}

struct LoopResult {
  std::vector<double> stalls;  // per checkpoint, seconds inside the step loop
  double wall_s = 0.0;
  double drain_s = 0.0;       // async: wait for the last write after the loop
  double last_write_s = 0.0;  // async: background time of the last write
  int64_t steps = 0;
  double ideal_s = 0.0;  // steps x step time
};

// Runs steps of `step_s` (sleep) for checkpoints x interval, checkpointing every interval.
Status run_loop(bool async, CheckpointStore* store, Snapshot* state, double step_s, double interval_s,
                int checkpoints, LoopResult* out) {
  std::unique_ptr<AsyncCheckpointWriter> writer;
  if (async) {
    writer = std::make_unique<AsyncCheckpointWriter>(store);
    PERIGEE_CHECK(writer->prepare(*state));  // at startup, as a training loop would
  }
  const int64_t steps_per_ckpt = std::max<int64_t>(1, std::llround(interval_s / step_s));
  const int64_t total = steps_per_ckpt * checkpoints;
  const auto t0 = Clock::now();
  for (int64_t step = 1; step <= total; ++step) {
    std::this_thread::sleep_for(std::chrono::duration<double>(step_s));
    if (step % steps_per_ckpt != 0) continue;
    state->meta.step = step;
    if (async) {
      StageStats st;
      PERIGEE_CHECK(writer->stage(*state, &st));
      out->stalls.push_back(st.stall_seconds);
    } else {
      CommitStats c;
      const auto tc = Clock::now();
      PERIGEE_CHECK(store->commit(*state, &c));
      out->stalls.push_back(seconds_since(tc));
    }
  }
  out->wall_s = seconds_since(t0);  // the loop itself; the last write drains below
  if (async) {
    const auto td = Clock::now();
    WriteRecord last;
    PERIGEE_CHECK(writer->wait(&last));
    out->drain_s = seconds_since(td);
    out->last_write_s = last.write_seconds;
  }
  out->steps = total;
  out->ideal_s = total * step_s;
  return Status::ok();
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / v.size();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_checkpoint: checkpoint throughput vs dd, and training stall with async on/off"};
  std::string parent = std::filesystem::temp_directory_path().string();
  double scale = 1.0, step_ms = 100.0, interval_s = 60.0;
  int reps = 3, checkpoints = 3;
  std::string json_path;
  app.add_option("--dir", parent,
                 "the bench writes in a new folder perigee-bench-checkpoint.XXXXXX here, removed at the end");
  app.add_option("--scale", scale,
                 "fraction of the GPT-2 124M state (1 = 1.49 GB; at least one layer, about 85 MB)")
      ->check(perigee::runtime::cli::finite_number("a number in [1e-4, 4]",
                                                   [](double v) { return v >= 1e-4 && v <= 4.0; }));
  app.add_option("--reps", reps, "synchronous commits timed for throughput")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--step-ms", step_ms, "simulated training step time")
      ->check(perigee::runtime::cli::finite_above_zero());
  app.add_option("--interval-s", interval_s, "checkpoint interval of the stall loop (s)")
      ->check(perigee::runtime::cli::finite_above_zero());
  app.add_option("--checkpoints", checkpoints, "checkpoints per stall loop (0 skips the loops)")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--json", json_path, "write the results as JSON to this file");
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "bench_checkpoint"); rc >= 0)
    return rc;
  if (!json_path.empty() && !perigee::bench::check_json_path("bench_checkpoint", json_path)) return 2;
  perigee::bench::exit_when_out_of_memory("bench_checkpoint");
  // Its own fresh folder: the bench never empties one it did not make.
  std::string pattern = (std::filesystem::path(parent) / "perigee-bench-checkpoint.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "bench_checkpoint: --dir: cannot make a folder in %s: %s\n", parent.c_str(),
                 std::strerror(errno));
    return 2;
  }
  const std::string dir = pattern;
  CheckpointStore store;
  StoreOptions options;
  options.keep_last = 2;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir, options, &store));
  Snapshot state = make_state(scale, 0);
  const uint64_t bytes = state.data_bytes();
  size_t datasets = 0;
  for (const Buffer& b : state.buffers) datasets += b.views.size();
  std::printf("state: %.3f GB (%zu buffers x %.1fM fp32, %zu datasets), folder %s\n", bytes / 1e9,
              state.buffers.size(), state.buffers[0].data.size() / 1e6, datasets, dir.c_str());

  json out;
  out["config"] = {{"scale", scale},
                   {"state_bytes", bytes},
                   {"datasets", datasets},
                   {"dir", dir},
                   {"step_ms", step_ms},
                   {"interval_s", interval_s},
                   {"checkpoints", checkpoints},
                   {"crc32c_hardware", crc32c_hardware_available()}};

  // CRC32C alone (an upper bound of the checksum cost).
  {
    const auto t0 = Clock::now();
    uint32_t c = 0;
    for (const Buffer& b : state.buffers) c ^= crc32c(b.data.data(), b.data.size() * sizeof(float));
    const double s = seconds_since(t0);
    std::printf("%-34s %8.3f s %9.0f MB/s   (%08x)\n", "crc32c over the state", s, mb_per_s(bytes, s), c);
    out["crc32c"] = {{"seconds", s}, {"mb_per_s", mb_per_s(bytes, s)}};
  }

  // Pairs of (dd, commit), so each commit is compared with the disk as it is at that moment (a
  // virtual disk's burst and the page cache change the speed from one write to the next).
  // dd: the disk's sequential write speed, same size, fsync included. Commit: write .tmp (CRC +
  // HDF5), fsync, rename, fsync folder, latest, retention.
  const uint64_t mib = std::max<uint64_t>(1, (bytes + (1 << 20) - 1) >> 20);
  const uint64_t dd_bytes = mib << 20;
  out["commit"] = json::array();
  out["dd"] = json::array();
  std::vector<double> ratios;
  for (int r = 0; r < reps; ++r) {
    const double dd_s = dd_seconds(dir, mib);
    if (dd_s > 0) {
      std::printf("%-34s %8.3f s %9.0f MB/s\n",
                  ("dd bs=1M conv=fsync, pair " + std::to_string(r + 1)).c_str(), dd_s,
                  mb_per_s(dd_bytes, dd_s));
      out["dd"].push_back({{"bytes", dd_bytes}, {"seconds", dd_s}, {"mb_per_s", mb_per_s(dd_bytes, dd_s)}});
    } else {
      std::printf("dd failed: no disk baseline\n");
    }
    state.meta.step = r + 1;
    (void)std::system("sync");
    CommitStats c;
    PERIGEE_CHECK_OR_DIE(store.commit(state, &c));
    std::printf("%-34s %8.3f s %9.0f MB/s   (crc %.2f, hdf5 %.2f, fsync %.2f, publish %.3f s)\n",
                ("commit (sync), pair " + std::to_string(r + 1)).c_str(), c.total_seconds,
                mb_per_s(bytes, c.total_seconds), c.write.crc_seconds, c.write.hdf5_seconds, c.fsync_seconds,
                c.publish_seconds);
    json cj = commit_json(c, bytes);
    if (dd_s > 0) {
      ratios.push_back(mb_per_s(bytes, c.total_seconds) / mb_per_s(dd_bytes, dd_s));
      cj["vs_dd"] = ratios.back();
    }
    out["commit"].push_back(cj);
  }
  if (!ratios.empty()) {
    std::vector<double> sorted = ratios;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::printf("%-34s %8.0f %%   (per pair:", "commit / dd, median", 100.0 * median);
    for (double x : ratios) std::printf(" %.0f %%", 100.0 * x);
    std::printf(")\n");
    out["commit_vs_dd_median"] = median;
  }

  // Verified read of the newest (page cache warm: an upper bound for a cold start).
  {
    Snapshot back;
    const auto t0 = Clock::now();
    PERIGEE_CHECK_OR_DIE(read_snapshot(store.path_for_step(reps), &back));
    const double s = seconds_since(t0);
    std::printf("%-34s %8.3f s %9.0f MB/s\n", "read + verify (page cache)", s, mb_per_s(bytes, s));
    out["read_verify"] = {{"seconds", s}, {"mb_per_s", mb_per_s(bytes, s)}};
  }

  // Stall seen by the training loop.
  if (checkpoints > 0) {
    std::printf("\nstall per checkpoint: one every %.0f s at %.0f ms/step (%d checkpoints per mode)\n",
                interval_s, step_ms, checkpoints);
    std::printf("%-8s %12s %12s %12s %14s %17s\n", "async", "stall mean", "stall max", "overhead",
                "loop slowdown", "background write");
    for (bool async : {false, true}) {
      LoopResult r;
      PERIGEE_CHECK_OR_DIE(run_loop(async, &store, &state, step_ms / 1e3, interval_s, checkpoints, &r));
      const double stall = mean(r.stalls);
      const double worst = *std::max_element(r.stalls.begin(), r.stalls.end());
      const double overhead = stall / interval_s;
      const double slowdown = r.wall_s / r.ideal_s - 1.0;
      std::printf("%-8s %10.3f s %10.3f s %11.2f %% %13.2f %% %14.3f s\n", async ? "on" : "off", stall, worst,
                  100.0 * overhead, 100.0 * slowdown, r.last_write_s);
      out[async ? "stall_async" : "stall_sync"] = {
          {"stall_mean_s", stall},   {"stall_max_s", worst},
          {"stalls_s", r.stalls},    {"overhead", overhead},
          {"loop_wall_s", r.wall_s}, {"loop_ideal_s", r.ideal_s},
          {"drain_s", r.drain_s},    {"last_background_write_s", r.last_write_s},
          {"steps", r.steps}};
    }
  }

  std::filesystem::remove_all(dir);
  const std::string text = out.dump(2);
  std::printf("\n%s\n", text.c_str());
  if (!json_path.empty() && !perigee::bench::write_json_text("bench_checkpoint", json_path, text)) return 1;
  return 0;
}
