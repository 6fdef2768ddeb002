// Trainer::check_memory: the setup's memory budget (runtime/memory_budget.hpp).
#include "kernels/cpu/host_memory.hpp"
#include "runtime/log.hpp"
#include "runtime/trainer.hpp"
#include "runtime/trainer_checkpoint.hpp"

namespace perigee::runtime {

Status Trainer::check_memory(const GptShape& shape, kernels::DType activations, kernels::DType logits) {
  const TrainConfig& tc = config_.train;
  const uint64_t n = ParameterTable::for_shape(shape).total();
  const uint64_t fp32_copy = n * sizeof(float);
  const bool multi = comm_->size() > 1;
  const bool gpu = backend_->kind() == kernels::DeviceKind::kCuda;
  // Rank 0 keeps a host copy of parameters and both moments to write checkpoints in the background
  // (and reads as much on a resume).
  const bool checkpoints =
      schedules_checkpoints(config_) && (!config_.checkpoint.dir.empty() || options_.write_run_dir);
  std::vector<MemoryItem> host_each;
  host_each.push_back(
      {"token data (the train and val files, 2 bytes a token, and the sample order)", token_bytes_});
  if (multi) host_each.push_back({"host copy of the parameters for broadcasts", fp32_copy});
  std::vector<MemoryItem> host_once;
  if (checkpoints && options_.rank0_on_host)
    host_once.push_back(
        {"rank 0's checkpoint staging copy (parameters, AdamW m and v)", checkpoint_state_bytes(n)});

  std::vector<MemoryDemand> demands(1);
  MemoryDemand& device = demands[0];
  device.ranks = options_.memory_ranks;
  device.per_rank = GptModel::memory_items(shape, *backend_, micro_batch_, tc.seq_len, activations, logits,
                                           tc.recompute, passes_per_step() > 1);
  // The advice starts with what takes the most: the state that grows with the model, or the activations.
  uint64_t activation_bytes = 0;
  for (const MemoryItem& item : device.per_rank)
    if (item.activations) activation_bytes += item.bytes;
  const char* activation_remedies =
      "[train] micro_batch (activations grow with it; gradients accumulate over passes) or seq_len, set "
      "[train] recompute = true, store [device] activations and logits as bf16";
  const std::string remedies =
      4 * fp32_copy >= activation_bytes
          ? str_cat("Train a smaller [model] (n_layer, n_embd), run fewer ranks on this host, or lower ",
                    activation_remedies, "; [device] memory_check = false tries anyway")
          : str_cat(
                "Lower ", activation_remedies,
                ", run fewer ranks on this host, or train a smaller [model]; [device] memory_check = false "
                "tries anyway");
  if (config_.comm.grad_dtype == "bf16" && multi)
    device.per_rank.push_back({"bf16 gradient wire", n * sizeof(uint16_t)});
  if (!gpu) {  // one memory: the host's
    device.per_rank.insert(device.per_rank.end(), host_each.begin(), host_each.end());
    device.once = host_once;
  } else {
    demands.push_back(MemoryDemand{"", 0, host_each, options_.host_ranks, host_once});
  }
  Status status = Status::ok();
  for (size_t i = 0; i < demands.size() && status.is_ok(); ++i) {
    MemoryDemand& d = demands[i];
    kernels::MemoryInfo info;
    Status measured = Status::ok();
    if (i == 0) {
      measured = backend_->memory_info(&info);
    } else {
      kernels::cpu::HostMemory host;
      measured = kernels::cpu::probe_host_memory(&host);
      info = {host.available, host.total, str_cat("host RAM (", host.source, ")")};
    }
    if (!measured.is_ok()) {  // nothing to compare with: the allocations will tell
      log::warn("memory check skipped: ", measured.message());
      continue;
    }
    d.where = info.where;
    d.available = info.available;
    status = check_fits(d, remedies);
    if (status.is_ok())
      log::info("memory: ", format_bytes(d.total()), " of ", format_bytes(d.available), " free in ", d.where,
                d.ranks > 1 ? str_cat(" (", d.ranks, " ranks)") : std::string());
  }
  if (!status.is_ok() && !config_.device.memory_check) {
    log::warn("[device] memory_check = false, so the job tries anyway: ", status.message());
    status = Status::ok();
  }
  // Every rank has measured before any allocates, and they fail together.
  if (!multi) return status;
  int32_t ok = status.is_ok() ? 1 : 0;
  PERIGEE_CHECK(comm_->all_reduce(&ok, &ok, 1, collectives::DataType::kInt32, collectives::ReduceOp::kMin));
  if (!status.is_ok() || ok == 1) return status;
  return make_error(StatusCode::kOutOfMemory,
                    "another rank's job does not fit in its memory (its message "
                    "lists the sizes)");
}

}  // namespace perigee::runtime
