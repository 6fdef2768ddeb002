#include "runtime/trainer_checkpoint.hpp"

#include <cmath>
#include <cstdio>

#include "runtime/optimizer.hpp"

namespace perigee::runtime {
namespace {

std::map<std::string, int64_t> shape_map(const GptShape& s) {
  return {{"n_layer", s.n_layer}, {"n_head", s.n_head}, {"n_embd", s.n_embd},
          {"context", s.context}, {"vocab", s.vocab},   {"padded_vocab", s.padded_vocab}};
}

std::vector<checkpoint::View> views_of(const ParameterTable& table) {
  std::vector<checkpoint::View> out;
  out.reserve(table.views().size());
  for (const auto& v : table.views()) {
    out.push_back(checkpoint::View{v.name, v.offset, std::vector<int64_t>(v.shape.begin(), v.shape.end())});
  }
  return out;
}

}  // namespace

checkpoint::SnapshotMeta make_checkpoint_meta(const Config& config, const GptModel& model, int64_t step,
                                              int world_size, const DataCursor& cursor, double last_lr,
                                              const InvariantWindow& window,
                                              const TokenFileHeader& train_data, int64_t adam_updates) {
  checkpoint::SnapshotMeta m;
  m.step = step;
  m.world_size = world_size;
  m.rng_states["init_and_data_seed"] = {config.train.seed};
  // The cursor is a global sample position (every rank holds the same one); one row per rank.
  m.data_cursors.assign(world_size, std::vector<uint64_t>{cursor.position});
  m.lr_schedule.kind = "warmup_cosine";
  m.lr_schedule.base_lr = config.train.lr;
  m.lr_schedule.min_lr_ratio = config.train.min_lr_ratio;
  m.lr_schedule.warmup_steps = config.train.warmup_steps;
  m.lr_schedule.total_steps = config.train.steps;
  m.lr_schedule.last_lr = last_lr;
  m.model_shape = shape_map(model.shape());
  m.config_json = config_to_json(config);
  if (!window.losses.empty()) {
    m.series[kInvariantLossesSeries] = window.losses;
    m.series[kInvariantNormsSeries] = window.grad_norms;
  }
  m.series[kTrainDataSeries] = {static_cast<double>(train_data.count),
                                static_cast<double>(train_data.vocab_size),
                                static_cast<double>(train_data.token_crc32)};
  m.series[kAdamUpdatesSeries] = {static_cast<double>(adam_updates)};  // exact below 2^53
  return m;
}

std::string train_data_change(const checkpoint::SnapshotMeta& meta, const TokenFileHeader& now,
                              const std::string& path) {
  const auto it = meta.series.find(kTrainDataSeries);
  if (it == meta.series.end()) return "";
  const std::vector<double> mine = {static_cast<double>(now.count), static_cast<double>(now.vocab_size),
                                    static_cast<double>(now.token_crc32)};
  if (it->second == mine) return "";
  auto describe = [](const std::vector<double>& v) {
    if (v.size() != 3) return str_cat(v.size(), " values");
    char crc[16];
    std::snprintf(crc, sizeof(crc), "%08llx", static_cast<unsigned long long>(v[2]));
    return str_cat(static_cast<uint64_t>(v[0]), " tokens, vocabulary ", static_cast<uint64_t>(v[1]),
                   ", crc32 ", crc);
  };
  return str_cat(path, " holds other tokens than the file the checkpoint was trained on (then ",
                 describe(it->second), "; now ", describe(mine), ")");
}

checkpoint::StateSource make_state_source(GptModel& model, checkpoint::SnapshotMeta meta) {
  checkpoint::StateSource src;
  src.meta = std::move(meta);
  const auto views = views_of(model.table());
  const uint64_t n = model.num_parameters();
  kernels::Backend* backend = model.backend();
  for (auto [name, ptr] : {std::pair{kParamsBuffer, model.params()}, std::pair{kAdamMBuffer, model.adam_m()},
                           std::pair{kAdamVBuffer, model.adam_v()}}) {
    checkpoint::BufferSource b;
    b.name = name;
    b.views = views;
    b.size = n;
    const float* live = ptr;
    b.copy_out = [backend, live](float* dst, uint64_t count) {
      return backend->copy_to_host(dst, live, count * sizeof(float));
    };
    src.buffers.push_back(std::move(b));
  }
  return src;
}

checkpoint::StoreOptions store_options(const CheckpointConfig& config) {
  checkpoint::StoreOptions options;
  options.keep_last = config.keep_last;
  options.exclusive = true;  // one job per checkpoint folder
  options.verify_after_commit =
      config.verify == "always" || (config.verify == "auto" && config.keep_last == 1);
  return options;
}

checkpoint::Expectation checkpoint_expectation(const GptModel& model, int world_size) {
  checkpoint::Expectation e;
  e.model_shape = shape_map(model.shape());
  for (const char* name : {kParamsBuffer, kAdamMBuffer, kAdamVBuffer})
    e.buffer_sizes[name] = model.num_parameters();
  e.world_size = world_size;
  return e;
}

Status restore_checkpoint(const checkpoint::Snapshot& snapshot, GptModel& model, int64_t* step,
                          DataCursor* cursor, InvariantWindow* window, int64_t* adam_updates) {
  const size_t n = model.num_parameters();
  const auto& meta = snapshot.meta;
  PERIGEE_REQUIRE(!meta.data_cursors.empty() && !meta.data_cursors[0].empty(), StatusCode::kInvalidArgument,
                  "checkpoint has no data cursor");
  InvariantWindow w;
  const auto losses = meta.series.find(kInvariantLossesSeries);
  const auto norms = meta.series.find(kInvariantNormsSeries);
  PERIGEE_REQUIRE((losses == meta.series.end()) == (norms == meta.series.end()), StatusCode::kInvalidArgument,
                  "checkpoint holds series '",
                  losses == meta.series.end() ? kInvariantNormsSeries : kInvariantLossesSeries,
                  "' without its partner '",
                  losses == meta.series.end() ? kInvariantLossesSeries : kInvariantNormsSeries, "'");
  if (losses != meta.series.end()) w = InvariantWindow{losses->second, norms->second};
  if (Status s = check_invariant_window(w); !s) return make_error(s.code(), "checkpoint: ", s.message());
  int64_t updates = meta.step;
  if (const auto it = meta.series.find(kAdamUpdatesSeries); it != meta.series.end()) {
    const std::vector<double>& u = it->second;
    PERIGEE_REQUIRE(
        u.size() == 1 && u[0] >= 0.0 && u[0] <= static_cast<double>(meta.step) && u[0] == std::floor(u[0]),
        StatusCode::kInvalidArgument, "checkpoint series '", kAdamUpdatesSeries,
        "' must be one whole number in [0, step ", meta.step, "] (", u.size(), " values, first ",
        u.empty() ? 0.0 : u[0], ")");
    updates = static_cast<int64_t>(u[0]);
  }
  std::vector<const checkpoint::Buffer*> buffers;
  for (const char* name : {kParamsBuffer, kAdamMBuffer, kAdamVBuffer}) {
    const checkpoint::Buffer* b = snapshot.find_buffer(name);
    PERIGEE_REQUIRE(
        b != nullptr && b->data.size() == n, StatusCode::kInvalidArgument, "checkpoint buffer ", name,
        b == nullptr ? " is missing" : str_cat(" has ", b->data.size(), " values, the model has ", n));
    buffers.push_back(b);
  }
  float* live[3] = {model.params(), model.adam_m(), model.adam_v()};
  for (size_t i = 0; i < 3; ++i)
    PERIGEE_CHECK(model.backend()->copy_to_device(live[i], buffers[i]->data.data(), n * sizeof(float)));
  *step = meta.step;
  cursor->position = meta.data_cursors[0][0];
  *window = std::move(w);
  *adam_updates = updates;
  return Status::ok();
}

}  // namespace perigee::runtime
