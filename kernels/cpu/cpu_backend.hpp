// CpuBackend: the fp32 reference implementation of kernels::Backend on the host.
// Parallelism is OpenMP only: GEMMs are split into fixed output tiles, each a single-threaded OpenBLAS
// cblas_sgemm (OpenBLAS's own thread pool stays at one thread), and every other op is an OpenMP loop
// over independent outputs. Partitions depend on shapes only, so results are deterministic and do not
// depend on the thread count. Memory is ordinary host memory (64-byte aligned, zero-filled on
// allocation). Every op runs to completion before it returns, so synchronize() is a no-op; one backend
// runs one op at a time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/act_cast.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::cpu {

class CpuBackend : public Backend {
 public:
  // threads <= 0: the OpenMP default (OMP_NUM_THREADS when set, else every hardware thread).
  // Sets the calling thread's OpenMP thread count and OpenBLAS's to 1; every parallel region of this
  // backend uses threads().
  explicit CpuBackend(int threads = 0);
  // The most threads a caller should ask for: OpenMP fails or crashes far above any machine's cores
  // (65536 segfaults in libgomp). The config and the benches' --threads refuse more.
  static constexpr int kMaxThreads = 4096;

  int threads() const { return threads_; }

  DeviceKind kind() const override { return DeviceKind::kCpu; }
  const char* name() const override { return "cpu"; }

  // ---- memory (cpu_backend.cpp)
  Status allocate(void** ptr, size_t bytes) override;
  void release(void* ptr) override;
  Status memset_zero(void* ptr, size_t bytes) override;
  Status copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  Status copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  Status synchronize() override;
  Status memory_info(MemoryInfo* out) const override;  // host RAM: probe_host_memory
  // ActCast's fp32 temporaries for the calls with bf16 tensors (act_dispatch.cpp), largest call's.
  Status working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const override;
  Status reserve_working_memory(std::span<const OpCall> calls) override;
  // Bytes the ActCast temporaries hold now.
  size_t held_working_bytes() const { return cast_scratch_.bytes(); }

  // ---- encoder.cpp
  Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C, int V) override;
  Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C, int V) override;

  // ---- layernorm.cpp (the forward's Act form: act_dispatch.cpp, as for every Act op below)
  Status layernorm_forward(Act out, float* mean, float* rstd, const float* inp, const float* weight,
                           const float* bias, int N, int C) override;
  Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* mean, const float* rstd, int N, int C) override;

  // ---- matmul.cpp
  Status matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                        int OC) override;
  Status matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                         const float* weight, int N, int C, int OC) override;

  // ---- attention.cpp
  size_t attention_state_size(int B, int T, int /*C*/, int NH) const override {
    return static_cast<size_t>(B) * NH * T * T;
  }
  Status attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) override;
  Status attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att, int B,
                            int T, int C, int NH) override;

  // ---- gelu.cpp
  Status gelu_forward(Act out, ConstAct inp, size_t n) override;
  Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) override;

  // ---- residual.cpp
  Status residual_forward(float* out, const float* a, const float* b, size_t n) override;

  // ---- crossentropy.cpp
  Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                              int V, int Vp) override;
  Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                               int V, int Vp) override;
  Status crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits, const int32_t* targets,
                                       float dloss, int N, int V, int Vp) override;

  // ---- adamw.cpp
  Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                      const AdamWParams& hp) override;

  // ---- reduce.cpp
  Status sum_squares(const float* x, size_t n, double* out) override;
  Status scale(float* x, float s, size_t n) override;
  Status to_bf16(uint16_t* out, const float* in, size_t n) override;
  Status from_bf16(float* out, const uint16_t* in, float s, size_t n) override;

  // ---- the fp32 implementations of the Act ops (layernorm.cpp, matmul.cpp, attention.cpp, gelu.cpp,
  // crossentropy.cpp).
  // A call with bf16 activations widens them into fp32 temporaries, runs these and rounds the
  // bf16 outputs (kernels/act_ops.hpp): the bf16 reference is fp32 arithmetic on the stored values.
  Status layernorm_forward_f32(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                               const float* bias, int N, int C);
  Status matmul_forward_f32(float* out, const float* inp, const float* weight, const float* bias, int N,
                            int C, int OC);
  Status matmul_backward_f32(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, int N, int C, int OC);
  Status attention_forward_f32(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
  Status attention_backward_f32(float* dqkv, const float* dout, const float* qkv, const float* out,
                                const float* att, int B, int T, int C, int NH);
  Status gelu_forward_f32(float* out, const float* inp, size_t n);
  Status gelu_backward_f32(float* dinp, const float* inp, const float* dout, size_t n);
  Status crossentropy_forward_backward_f32(float* losses, float* dlogits, const float* logits,
                                           const int32_t* targets, float dloss, int N, int V, int Vp);
  // The same with bf16 logits or dlogits, a row at a time (no [N, Vp] temporaries).
  Status crossentropy_forward_backward_rows(float* losses, Act dlogits, ConstAct logits,
                                            const int32_t* targets, float dloss, int N, int V, int Vp);

 private:
  int threads_;
  CastScratch cast_scratch_;  // fp32 temporaries of bf16 activations
};

}  // namespace perigee::kernels::cpu
