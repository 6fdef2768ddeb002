// Communicator: how ranks (one per satellite GPU) exchange flat buffers. The training loop talks
// only to this interface; backends are MPI (this folder), NCCL and emulated laser links later.
// Buffers are flat and typed; collectives know nothing of parameters or models.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.hpp"

namespace perigee::collectives {

enum class DataType { kFloat32, kFloat64, kInt32, kInt64, kUInt8 };
enum class ReduceOp { kSum, kMax, kMin, kAvg };

size_t data_type_size(DataType type);
const char* data_type_name(DataType type);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual const char* name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // recv[i] = op over ranks of send[i]. In place when send == recv. kAvg divides by size()
  // (floating types only).
  virtual Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) = 0;
  virtual Status broadcast(void* buffer, size_t count, DataType type, int root) = 0;
  // recv holds size() * count elements, rank r's block at r * count.
  virtual Status all_gather(const void* send, void* recv, size_t count, DataType type) = 0;
  virtual Status barrier() = 0;

  // Emulated seconds all collectives so far took on a modelled network (the emulated laser links);
  // 0 for real networks. Callers take differences around a collective.
  virtual double modelled_seconds() const { return 0.0; }
};

}  // namespace perigee::collectives
