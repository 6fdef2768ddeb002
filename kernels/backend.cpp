// The Backend's default (unfused) forms of its fused ops: the separate ops in order.
#include "kernels/backend.hpp"

#include "kernels/op_checks.hpp"

namespace perigee::kernels {

Status Backend::matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight, const float* bias,
                                    int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_forward_operands("matmul_gelu_forward", out, pre, inp, weight, bias, N, C, OC));
  PERIGEE_CHECK(matmul_forward(pre, inp, weight, bias, N, C, OC));
  return gelu_forward(out, pre, static_cast<size_t>(N) * OC);
}

Status Backend::matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                                     const float* weight, ConstAct pre, int N, int C, int OC) {
  PERIGEE_CHECK(check_matmul_backward_operands("matmul_backward_gelu", dpre, dweight, dbias, dout, inp,
                                               weight, pre, N, C, OC));
  PERIGEE_CHECK(matmul_backward(dpre, dweight, dbias, dout, inp, weight, N, C, OC));
  if (dpre.data == nullptr) return Status::ok();  // only the parameter gradients were asked for
  return gelu_backward(dpre, pre, dpre, static_cast<size_t>(N) * C);
}

Status Backend::residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd, const float* a,
                                           const float* b, const float* weight, const float* bias, int N,
                                           int C) {
  PERIGEE_CHECK(residual_forward(residual, a, b, static_cast<size_t>(N) * static_cast<size_t>(C)));
  return layernorm_forward(out, mean, rstd, residual, weight, bias, N, C);
}

Status Backend::adamw_update_runs(float* params, const float* grads, float* m, float* v,
                                  std::span<const AdamWRun> runs, const AdamWParams& hp) {
  PERIGEE_CHECK(check_adamw_runs("adamw_update_runs", runs));
  PERIGEE_CHECK(check_adamw_params("adamw_update_runs", hp));  // also when every run is empty
  AdamWParams run_hp = hp;
  for (const AdamWRun& r : runs) {
    if (r.count == 0) continue;
    run_hp.weight_decay = r.decay ? hp.weight_decay : 0.0f;
    PERIGEE_CHECK(
        adamw_update(params + r.offset, grads + r.offset, m + r.offset, v + r.offset, r.count, run_hp));
  }
  return Status::ok();
}

}  // namespace perigee::kernels
