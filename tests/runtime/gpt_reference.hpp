// A double-precision GPT-2 written from its definition, independent of kernels/: token + position
// embeddings, pre-LN blocks (LayerNorm eps 1e-5, causal softmax attention scaled by 1/sqrt(hs),
// tanh-approximation GELU), final LayerNorm, the LM head tied to wte, and the mean cross-entropy over
// the first `vocab` columns of the padded logits. Weights are [out, in] as in ParameterTable (out =
// in . W^T + b). gpt_reference_loss_and_grads gives the mean loss and the gradient of every parameter
// (same layout as GptModel::grads()), the reference the engine's whole-model gradient is checked
// against element by element.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gpt_model.hpp"

namespace perigee::runtime::testing {

class GptReference {
 public:
  GptReference(const GptShape& shape, const ParameterTable& table, const std::vector<float>& params)
      : s_(shape), table_(table), p_(params.begin(), params.end()), g_(params.size(), 0.0) {}

  // Mean loss over the B*T positions; grads() then holds dLoss/dparameter.
  double loss_and_grads(const std::vector<int32_t>& x, const std::vector<int32_t>& y, int B, int T) {
    B_ = B, T_ = T, N_ = B * T;
    const int C = s_.n_embd, L = s_.n_layer, Vp = s_.padded_vocab;
    std::vector<double> res(static_cast<size_t>(N_) * C);
    for (int n = 0; n < N_; ++n)
      for (int c = 0; c < C; ++c)
        res[at(n, c, C)] =
            p("wte.weight")[static_cast<size_t>(x[n]) * C + c] + p("wpe.weight")[at(n % T, c, C)];
    std::vector<Block> blocks(L);
    for (int l = 0; l < L; ++l) {
      Block& k = blocks[l];
      const std::string h = "h." + std::to_string(l) + ".";
      k.in = res;
      layernorm(k.in, h + "ln_1", &k.ln1, &k.mean1, &k.rstd1);
      k.qkv = matmul(k.ln1, C, h + "attn.c_attn", 3 * C);
      attention(k.qkv, &k.att, &k.atty);
      const std::vector<double> proj = matmul(k.atty, C, h + "attn.c_proj", C);
      k.res2 = k.in;
      for (size_t i = 0; i < proj.size(); ++i) k.res2[i] += proj[i];
      layernorm(k.res2, h + "ln_2", &k.ln2, &k.mean2, &k.rstd2);
      k.fc = matmul(k.ln2, C, h + "mlp.c_fc", 4 * C);
      k.gelu.resize(k.fc.size());
      for (size_t i = 0; i < k.fc.size(); ++i) k.gelu[i] = gelu(k.fc[i]);
      const std::vector<double> mlp = matmul(k.gelu, 4 * C, h + "mlp.c_proj", C);
      res = k.res2;
      for (size_t i = 0; i < mlp.size(); ++i) res[i] += mlp[i];
    }
    std::vector<double> lnf, meanf, rstdf;
    layernorm(res, "ln_f", &lnf, &meanf, &rstdf);
    const std::vector<double> logits = matmul(lnf, C, "wte", Vp, /*bias=*/false);

    double loss = 0.0;
    std::vector<double> dlogits(logits.size(), 0.0);
    for (int n = 0; n < N_; ++n) {
      const double* z = &logits[at(n, 0, Vp)];
      const double mx = *std::max_element(z, z + s_.vocab);
      double sum = 0.0;
      for (int v = 0; v < s_.vocab; ++v) sum += std::exp(z[v] - mx);
      loss += std::log(sum) - (z[y[n]] - mx);
      for (int v = 0; v < s_.vocab; ++v)
        dlogits[at(n, v, Vp)] = (std::exp(z[v] - mx) / sum - (v == y[n] ? 1.0 : 0.0)) / N_;
    }

    std::vector<double> dres(res.size(), 0.0);
    layernorm_backward(matmul_backward(dlogits, lnf, C, "wte", Vp, false), res, "ln_f", meanf, rstdf, &dres);
    for (int l = L - 1; l >= 0; --l) {
      const Block& k = blocks[l];
      const std::string h = "h." + std::to_string(l) + ".";
      std::vector<double> dgelu = matmul_backward(dres, k.gelu, 4 * C, h + "mlp.c_proj", C);
      for (size_t i = 0; i < dgelu.size(); ++i) dgelu[i] *= gelu_grad(k.fc[i]);
      layernorm_backward(matmul_backward(dgelu, k.ln2, C, h + "mlp.c_fc", 4 * C), k.res2, h + "ln_2", k.mean2,
                         k.rstd2, &dres);
      const std::vector<double> datty = matmul_backward(dres, k.atty, C, h + "attn.c_proj", C);
      layernorm_backward(
          matmul_backward(attention_backward(datty, k.qkv, k.att), k.ln1, C, h + "attn.c_attn", 3 * C), k.in,
          h + "ln_1", k.mean1, k.rstd1, &dres);
    }
    for (int n = 0; n < N_; ++n)
      for (int c = 0; c < C; ++c) {
        g("wte.weight")[static_cast<size_t>(x[n]) * C + c] += dres[at(n, c, C)];
        g("wpe.weight")[at(n % T, c, C)] += dres[at(n, c, C)];
      }
    return loss / N_;
  }

  const std::vector<double>& grads() const { return g_; }

 private:
  struct Block {
    std::vector<double> in, ln1, mean1, rstd1, qkv, att, atty, res2, ln2, mean2, rstd2, fc, gelu;
  };

  static size_t at(int row, int col, int width) {
    return static_cast<size_t>(row) * static_cast<size_t>(width) + static_cast<size_t>(col);
  }
  const double* p(const std::string& name) const { return p_.data() + table_.find(name)->offset; }
  double* g(const std::string& name) { return g_.data() + table_.find(name)->offset; }

  static double gelu(double x) {
    const double k = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
  }
  static double gelu_grad(double x) {
    const double k = std::sqrt(2.0 / M_PI);
    const double th = std::tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
  }

  void layernorm(const std::vector<double>& in, const std::string& name, std::vector<double>* out,
                 std::vector<double>* mean, std::vector<double>* rstd) const {
    const int C = s_.n_embd;
    const double* w = p(name + ".weight");
    const double* b = p(name + ".bias");
    out->assign(in.size(), 0.0);
    mean->assign(N_, 0.0);
    rstd->assign(N_, 0.0);
    for (int n = 0; n < N_; ++n) {
      double m = 0.0, var = 0.0;
      for (int c = 0; c < C; ++c) m += in[at(n, c, C)];
      m /= C;
      for (int c = 0; c < C; ++c) var += (in[at(n, c, C)] - m) * (in[at(n, c, C)] - m);
      const double r = 1.0 / std::sqrt(var / C + 1e-5);
      (*mean)[n] = m, (*rstd)[n] = r;
      for (int c = 0; c < C; ++c) (*out)[at(n, c, C)] = (in[at(n, c, C)] - m) * r * w[c] + b[c];
    }
  }

  // Adds the input gradient into *dinp.
  void layernorm_backward(const std::vector<double>& dout, const std::vector<double>& in,
                          const std::string& name, const std::vector<double>& mean,
                          const std::vector<double>& rstd, std::vector<double>* dinp) {
    const int C = s_.n_embd;
    const double* w = p(name + ".weight");
    double* dw = g(name + ".weight");
    double* db = g(name + ".bias");
    for (int n = 0; n < N_; ++n) {
      double mean_dnorm = 0.0, mean_dnorm_xhat = 0.0;
      for (int c = 0; c < C; ++c) {
        const double xhat = (in[at(n, c, C)] - mean[n]) * rstd[n];
        const double dnorm = dout[at(n, c, C)] * w[c];
        mean_dnorm += dnorm / C;
        mean_dnorm_xhat += dnorm * xhat / C;
        dw[c] += dout[at(n, c, C)] * xhat;
        db[c] += dout[at(n, c, C)];
      }
      for (int c = 0; c < C; ++c) {
        const double xhat = (in[at(n, c, C)] - mean[n]) * rstd[n];
        (*dinp)[at(n, c, C)] += rstd[n] * (dout[at(n, c, C)] * w[c] - mean_dnorm - xhat * mean_dnorm_xhat);
      }
    }
  }

  std::vector<double> matmul(const std::vector<double>& in, int C, const std::string& name, int OC,
                             bool bias = true) const {
    const double* w = p(name + ".weight");
    const double* b = bias ? p(name + ".bias") : nullptr;
    std::vector<double> out(static_cast<size_t>(N_) * OC);
    for (int n = 0; n < N_; ++n)
      for (int o = 0; o < OC; ++o) {
        double sum = b ? b[o] : 0.0;
        for (int c = 0; c < C; ++c) sum += in[at(n, c, C)] * w[at(o, c, C)];
        out[at(n, o, OC)] = sum;
      }
    return out;
  }

  // Accumulates the weight and bias gradients; returns the input gradient.
  std::vector<double> matmul_backward(const std::vector<double>& dout, const std::vector<double>& in, int C,
                                      const std::string& name, int OC, bool bias = true) {
    const double* w = p(name + ".weight");
    double* dw = g(name + ".weight");
    double* db = bias ? g(name + ".bias") : nullptr;
    std::vector<double> dinp(static_cast<size_t>(N_) * C, 0.0);
    for (int n = 0; n < N_; ++n)
      for (int o = 0; o < OC; ++o) {
        const double d = dout[at(n, o, OC)];
        if (db) db[o] += d;
        for (int c = 0; c < C; ++c) {
          dinp[at(n, c, C)] += d * w[at(o, c, C)];
          dw[at(o, c, C)] += d * in[at(n, c, C)];
        }
      }
    return dinp;
  }

  // qkv [N, 3C] (q, k, v, each heads x hs); att [B, NH, T, T] the causal probabilities.
  void attention(const std::vector<double>& qkv, std::vector<double>* att, std::vector<double>* out) const {
    const int C = s_.n_embd, NH = s_.n_head, hs = C / NH, T = T_;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
    att->assign(static_cast<size_t>(B_) * NH * T * T, 0.0);
    out->assign(static_cast<size_t>(N_) * C, 0.0);
    for (int b = 0; b < B_; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t) {
          double* a = att->data() + ((static_cast<size_t>(b) * NH + h) * T + t) * T;
          double mx = -INFINITY;
          for (int u = 0; u <= t; ++u) {
            double dot = 0.0;
            for (int i = 0; i < hs; ++i)
              dot += qkv[at(b * T + t, h * hs + i, 3 * C)] * qkv[at(b * T + u, C + h * hs + i, 3 * C)];
            a[u] = dot * scale;
            mx = std::max(mx, a[u]);
          }
          double sum = 0.0;
          for (int u = 0; u <= t; ++u) sum += (a[u] = std::exp(a[u] - mx));
          for (int u = 0; u <= t; ++u) a[u] /= sum;
          for (int i = 0; i < hs; ++i) {
            double o = 0.0;
            for (int u = 0; u <= t; ++u) o += a[u] * qkv[at(b * T + u, 2 * C + h * hs + i, 3 * C)];
            (*out)[at(b * T + t, h * hs + i, C)] = o;
          }
        }
  }

  std::vector<double> attention_backward(const std::vector<double>& dout, const std::vector<double>& qkv,
                                         const std::vector<double>& att) const {
    const int C = s_.n_embd, NH = s_.n_head, hs = C / NH, T = T_;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
    std::vector<double> dqkv(qkv.size(), 0.0), datt(T);
    for (int b = 0; b < B_; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t) {
          const double* a = att.data() + ((static_cast<size_t>(b) * NH + h) * T + t) * T;
          double weighted = 0.0;  // sum_u a[u] * datt[u]
          for (int u = 0; u <= t; ++u) {
            datt[u] = 0.0;
            for (int i = 0; i < hs; ++i) {
              const double d = dout[at(b * T + t, h * hs + i, C)];
              datt[u] += d * qkv[at(b * T + u, 2 * C + h * hs + i, 3 * C)];
              dqkv[at(b * T + u, 2 * C + h * hs + i, 3 * C)] += a[u] * d;
            }
            weighted += a[u] * datt[u];
          }
          for (int u = 0; u <= t; ++u) {
            const double ds = a[u] * (datt[u] - weighted) * scale;
            for (int i = 0; i < hs; ++i) {
              dqkv[at(b * T + t, h * hs + i, 3 * C)] += ds * qkv[at(b * T + u, C + h * hs + i, 3 * C)];
              dqkv[at(b * T + u, C + h * hs + i, 3 * C)] += ds * qkv[at(b * T + t, h * hs + i, 3 * C)];
            }
          }
        }
    return dqkv;
  }

  GptShape s_;
  const ParameterTable& table_;
  std::vector<double> p_, g_;
  int B_ = 0, T_ = 0, N_ = 0;
};

}  // namespace perigee::runtime::testing
