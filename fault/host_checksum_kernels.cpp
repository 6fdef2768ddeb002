// HostChecksumKernels (fault/abft_gemm.hpp): the memory-touching half of ABFT on host memory, for the
// CPU backend. Every sum is in double with a fixed order: a pass walks fixed tiles of kTileRows x
// kTileCols (256 x 512); inside a tile, row sums use 16 interleaved lanes (element c in lane c % 16)
// combined in a fixed tree, column sums add the tile's rows in order; a row's tile partials are
// added in column-tile order and a column's in row-tile order. Partitions depend on shapes only,
// so checksums do not depend on the thread count.
#include "fault/host_checksum_kernels.hpp"
#include "fault/abft_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace perigee::fault {
namespace {

// Compiles the marked function for AVX-512, AVX2 and baseline x86-64 and picks one at load time.
// The lanes are explicit vectors in the source and contraction is off (CMakeLists), so every clone
// computes the same sums in the same order and gives the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PERIGEE_FAULT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PERIGEE_FAULT_CLONES
#endif

// Eight doubles, eight floats, eight 64-bit integers (GCC vector extensions: element-wise, exact
// IEEE operations in every instruction set).
typedef double V8 __attribute__((vector_size(64)));
typedef float F8 __attribute__((vector_size(32)));
typedef int64_t I8 __attribute__((vector_size(64)));

constexpr int64_t kTileRows = 256;  // a pass works on tiles of rows x columns
constexpr int64_t kTileCols = 512;
constexpr int64_t kParallelMin = 1 << 17;       // elements below which a pass stays serial (~50 us)
constexpr size_t kCopyChunk = size_t{1} << 18;  // floats per parallel copy / zero-scan chunk

inline V8 load8(const float* p) {
  F8 f;
  std::memcpy(&f, p, sizeof f);
  return __builtin_convertvector(f, V8);
}
inline V8 load8(const double* p) {
  V8 d;
  std::memcpy(&d, p, sizeof d);
  return d;
}
inline void store8(double* p, V8 v) {
  std::memcpy(p, &v, sizeof v);
}
inline V8 abs8(V8 v) {
  return reinterpret_cast<V8>(reinterpret_cast<I8>(v) & 0x7FFFFFFFFFFFFFFFll);
}
inline V8 splat(double a) {
  return V8{} + a;
}
// Sum of 16 lanes (two vectors) in a fixed tree.
inline double tree16(V8 a, V8 b) {
  const V8 s = a + b;
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// What one pass over a row-major X[R, Cc] computes (null pointers: not computed):
//   row_out[r] = X[r, :] . row_v        row_abs[r] = |X[r, :]| . row_vabs
//   col_out[c] = col_u . X[:, c]        col_abs[c] = col_uabs . |X[:, c]|
struct Pass {
  const double* row_v = nullptr;
  const double* row_vabs = nullptr;
  const double* col_u = nullptr;
  const double* col_uabs = nullptr;
  double* row_out = nullptr;
  double* row_abs = nullptr;
  double* col_out = nullptr;
  double* col_abs = nullptr;
  bool unit = false;  // every given vector is all ones: plain sums (same bits, less work)
};

// One tile (rows x w, stride ld; v, vabs point at the tile's first column, u, uabs at its first
// row): partial row sums over the tile's columns (element c in lane c % 16) into prow/prow_abs,
// partial column sums over the tile's rows, in row order, into pcol/pcol_abs.
template <bool kRow, bool kCol, bool kAbs, bool kUnit>
inline __attribute__((always_inline)) void tile_body(const float* X, int64_t ld, int64_t rows, int64_t w,
                                                     const double* v, const double* vabs, const double* u,
                                                     const double* uabs, double* prow, double* prow_abs,
                                                     double* pcol, double* pcol_abs) {
  if constexpr (kCol) {
    for (int64_t j = 0; j < w; ++j) {
      pcol[j] = 0.0;
      if constexpr (kAbs) pcol_abs[j] = 0.0;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = X + r * ld;
    V8 s0 = {}, s1 = {}, a0 = {}, a1 = {};
    const V8 ur = kCol && !kUnit ? splat(u[r]) : splat(1.0);
    const V8 uar = kCol && kAbs && !kUnit ? splat(uabs[r]) : splat(1.0);
    int64_t c = 0;
    for (; c + 16 <= w; c += 16) {
      const V8 xa = load8(x + c), xb = load8(x + c + 8);
      // With kUnit every weight is 1: the products are the values themselves (same bits).
      if constexpr (kRow) {
        s0 += kUnit ? xa : xa * load8(v + c);
        s1 += kUnit ? xb : xb * load8(v + c + 8);
        if constexpr (kAbs) {
          a0 += kUnit ? abs8(xa) : abs8(xa) * load8(vabs + c);
          a1 += kUnit ? abs8(xb) : abs8(xb) * load8(vabs + c + 8);
        }
      }
      if constexpr (kCol) {
        store8(pcol + c, load8(pcol + c) + (kUnit ? xa : ur * xa));
        store8(pcol + c + 8, load8(pcol + c + 8) + (kUnit ? xb : ur * xb));
        if constexpr (kAbs) {
          store8(pcol_abs + c, load8(pcol_abs + c) + (kUnit ? abs8(xa) : uar * abs8(xa)));
          store8(pcol_abs + c + 8, load8(pcol_abs + c + 8) + (kUnit ? abs8(xb) : uar * abs8(xb)));
        }
      }
    }
    for (int64_t l = 0; c + l < w; ++l) {
      const double xv = x[c + l], xa = std::fabs(xv);
      if constexpr (kRow) {
        V8& s = l < 8 ? s0 : s1;
        V8& a = l < 8 ? a0 : a1;
        s[l % 8] += kUnit ? xv : xv * v[c + l];
        if constexpr (kAbs) a[l % 8] += kUnit ? xa : xa * vabs[c + l];
      }
      if constexpr (kCol) {
        pcol[c + l] += kUnit ? xv : ur[0] * xv;
        if constexpr (kAbs) pcol_abs[c + l] += kUnit ? xa : uar[0] * xa;
      }
    }
    if constexpr (kRow) {
      prow[r] = tree16(s0, s1);
      if constexpr (kAbs) prow_abs[r] = tree16(a0, a1);
    }
  }
}

#define PERIGEE_FAULT_TILE(name, kRow, kCol, kAbs, kUnit)                                                 \
  PERIGEE_FAULT_CLONES                                                                                    \
  void name(const float* X, int64_t ld, int64_t rows, int64_t w, const double* v, const double* vabs,     \
            const double* u, const double* uabs, double* prow, double* prow_abs, double* pcol,            \
            double* pcol_abs) {                                                                           \
    tile_body<kRow, kCol, kAbs, kUnit>(X, ld, rows, w, v, vabs, u, uabs, prow, prow_abs, pcol, pcol_abs); \
  }
PERIGEE_FAULT_TILE(tile_row_col_abs, true, true, true, false)
PERIGEE_FAULT_TILE(tile_row_abs, true, false, true, false)
PERIGEE_FAULT_TILE(tile_col_abs, false, true, true, false)
PERIGEE_FAULT_TILE(tile_row_col, true, true, false, false)
PERIGEE_FAULT_TILE(tile_row, true, false, false, false)
PERIGEE_FAULT_TILE(tile_col, false, true, false, false)
PERIGEE_FAULT_TILE(sum_row_col_abs, true, true, true, true)
PERIGEE_FAULT_TILE(sum_row_abs, true, false, true, true)
PERIGEE_FAULT_TILE(sum_col_abs, false, true, true, true)
PERIGEE_FAULT_TILE(sum_row_col, true, true, false, true)
PERIGEE_FAULT_TILE(sum_row, true, false, false, true)
PERIGEE_FAULT_TILE(sum_col, false, true, false, true)
#undef PERIGEE_FAULT_TILE

// Runs `pass` over X[R, Cc] tile by tile; a row's tile partials are added in column-tile order, a
// column's in row-tile order. With abs requested, both twins of every requested side must be given.
void run_pass(const float* X, int64_t R, int64_t Cc, const Pass& pass, int threads,
              std::vector<double>* scratch) {
  const bool row = pass.row_v != nullptr, col = pass.col_u != nullptr;
  const bool abs = pass.row_vabs != nullptr || pass.col_uabs != nullptr;
  auto* tile = pass.unit ? (row && col ? (abs ? sum_row_col_abs : sum_row_col)
                            : row      ? (abs ? sum_row_abs : sum_row)
                                       : (abs ? sum_col_abs : sum_col))
                         : (row && col ? (abs ? tile_row_col_abs : tile_row_col)
                            : row      ? (abs ? tile_row_abs : tile_row)
                                       : (abs ? tile_col_abs : tile_col));
  const int64_t rt = (R + kTileRows - 1) / kTileRows, ct = (Cc + kTileCols - 1) / kTileCols;
  const int64_t planes = abs ? 2 : 1;
  // Partials: rows [planes][ct][R], then columns [planes][rt][Cc].
  scratch->resize(static_cast<size_t>(planes * (ct * R + rt * Cc)));
  double* prow = scratch->data();
  double* pcol = prow + planes * ct * R;
  const int64_t tasks = rt * ct;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (R * Cc >= kParallelMin && tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t i = t / ct, j = t % ct;
    const int64_t r0 = i * kTileRows, c0 = j * kTileCols;
    tile(X + r0 * Cc + c0, Cc, std::min(kTileRows, R - r0), std::min(kTileCols, Cc - c0),
         row ? pass.row_v + c0 : nullptr, row && abs ? pass.row_vabs + c0 : nullptr,
         col ? pass.col_u + r0 : nullptr, col && abs ? pass.col_uabs + r0 : nullptr, prow + j * R + r0,
         abs ? prow + (ct + j) * R + r0 : nullptr, pcol + i * Cc + c0,
         abs ? pcol + (rt + i) * Cc + c0 : nullptr);
  }
  if (row) {
#pragma omp parallel for schedule(static) num_threads(threads) if (R * ct >= kParallelMin)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0.0, a = 0.0;
      for (int64_t j = 0; j < ct; ++j) {
        s += prow[j * R + r];
        if (abs) a += prow[(ct + j) * R + r];
      }
      pass.row_out[r] = s;
      if (abs) pass.row_abs[r] = a;
    }
  }
  if (col) {
#pragma omp parallel for schedule(static) num_threads(threads) if (Cc * rt >= kParallelMin)
    for (int64_t c = 0; c < Cc; ++c) {
      double s = 0.0, a = 0.0;
      for (int64_t i = 0; i < rt; ++i) {
        s += pcol[i * Cc + c];
        if (abs) a += pcol[(rt + i) * Cc + c];
      }
      pass.col_out[c] = s;
      if (abs) pass.col_abs[c] = a;
    }
  }
}

void resize_lines(LineSums* s, int64_t M, int64_t Nn, bool weighted) {
  if (weighted) {
    s->row_weighted.assign(static_cast<size_t>(M), 0.0);
    s->col_weighted.assign(static_cast<size_t>(Nn), 0.0);
  } else {
    s->row.assign(static_cast<size_t>(M), 0.0);
    s->col.assign(static_cast<size_t>(Nn), 0.0);
  }
}

// A GEMM operand as stored: X [R, Cc] row-major, with the inner dimension K along its columns
// (k_on_cols) or its rows. Its K-vector (alpha = e^T A or beta = B e, with multipliers u) reduces the
// other index away; its lines (A's rows or B's columns of the output, weighted by the other operand's
// K-vector) reduce K away.
struct Operand {
  const float* X;
  int64_t R, Cc;
  bool k_on_cols;
};

// Plain and magnitude vectors of one prediction line set or K-vector (abs null: plain only).
struct Sums {
  double* plain;
  double* abs = nullptr;
};

void add_k_vector(Pass* pass, const Operand& o, const double* u, const double* uabs, Sums out) {
  if (o.k_on_cols) {
    pass->col_u = u, pass->col_uabs = uabs, pass->col_out = out.plain, pass->col_abs = out.abs;
  } else {
    pass->row_v = u, pass->row_vabs = uabs, pass->row_out = out.plain, pass->row_abs = out.abs;
  }
}

void add_lines(Pass* pass, const Operand& o, Sums v, Sums out) {
  if (o.k_on_cols) {
    pass->row_v = v.plain, pass->row_vabs = v.abs, pass->row_out = out.plain, pass->row_abs = out.abs;
  } else {
    pass->col_u = v.plain, pass->col_uabs = v.abs, pass->col_out = out.plain, pass->col_abs = out.abs;
  }
}

// The three passes of a prediction: the operand read first gives its K-vector (multipliers u, and
// uabs for the magnitudes), the second gives its K-vector and its lines weighted by the first's in
// one pass, the first is read again for its lines weighted by the second's K-vector. `unit`: u (and
// uabs) are all ones, so the first pass takes plain sums.
struct Side {
  Operand operand;
  Sums k_vector, lines;
};
void three_passes(const Side& first, const Side& second, const double* u, const double* uabs, bool unit,
                  int threads, std::vector<double>* scratch) {
  Pass p1{.unit = unit};
  add_k_vector(&p1, first.operand, u, uabs, first.k_vector);
  run_pass(first.operand.X, first.operand.R, first.operand.Cc, p1, threads, scratch);
  Pass p2;
  add_k_vector(&p2, second.operand, u, uabs, second.k_vector);
  add_lines(&p2, second.operand, first.k_vector, second.lines);
  run_pass(second.operand.X, second.operand.R, second.operand.Cc, p2, threads, scratch);
  Pass p3;
  add_lines(&p3, first.operand, second.k_vector, first.lines);
  run_pass(first.operand.X, first.operand.R, first.operand.Cc, p3, threads, scratch);
}

// The stored operands A [M, K] and B [K, Nn] of a GEMM problem (not the bias gradient's).
void operands(const GemmProblem& p, Operand* a, Operand* b) {
  const int64_t N = p.N, C = p.C, OC = p.OC;
  switch (p.kind) {
    case GemmKind::kForward:  // A = inp [N, C], B = weight^T (weight [OC, C]); K = C
      *a = {p.inp, N, C, true}, *b = {p.weight, OC, C, true};
      return;
    case GemmKind::kBackwardInput:  // A = dout [N, OC], B = weight [OC, C]; K = OC
      *a = {p.dout, N, OC, true}, *b = {p.weight, OC, C, false};
      return;
    default:  // kBackwardWeight: A = dout^T (dout [N, OC]), B = inp [N, C]; K = N
      *a = {p.dout, N, OC, false}, *b = {p.inp, N, C, false};
      return;
  }
}

}  // namespace

// ---------------------------------------------------------------- host checksum kernels

HostChecksumKernels::HostChecksumKernels(int threads)
    : threads_(threads > 0 ? threads : std::max(1, omp_get_max_threads())) {}

const double* HostChecksumKernels::ones(int64_t n) {
  if (static_cast<int64_t>(ones_.size()) < n) ones_.assign(static_cast<size_t>(n), 1.0);
  return ones_.data();
}

const double* HostChecksumKernels::weights(int64_t n) {
  if (static_cast<int64_t>(weights_.size()) < n) {
    weights_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) weights_[static_cast<size_t>(i)] = static_cast<double>(i + 1);
  }
  return weights_.data();
}

// Plain sums (the prediction) and magnitude sums (S). Notation: the output is A[M, K] B[K, Nn];
// alpha = e^T A and beta = B e (with their |.| twins), then expected column sums alpha B and row
// sums A beta. Three passes: the operand whose two reductions depend on the other's is read twice
// (the smaller one), the other once with both of its reductions fused. Either order gives the same
// bits: every output is the same sum whichever pass computes it.
Status HostChecksumKernels::encode(const GemmProblem& p, const float* before, GemmEncoding* out) {
  PERIGEE_CHECK(p.validate());
  const int64_t N = p.N, C = p.C, OC = p.OC;
  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const double* one = ones(std::max({N, C, OC}));
  resize_lines(&out->expected, M, Nn, false);
  out->row_abs.assign(static_cast<size_t>(M), 0.0);
  out->col_abs.assign(static_cast<size_t>(Nn), 0.0);
  for (auto* v : {&a0_, &a1_, &b0_, &b1_}) v->assign(static_cast<size_t>(K), 0.0);
  double *a0 = a0_.data(), *a1 = a1_.data(), *b0 = b0_.data(), *b1 = b1_.data();
  double *erow = out->expected.row.data(), *ecol = out->expected.col.data();
  double *srow = out->row_abs.data(), *scol = out->col_abs.data();
  const int t = threads_;
  std::vector<double>* sc = &scratch_;
  if (p.kind == GemmKind::kBackwardBias) {  // A = e^T [1, N], B = dout [N, OC]: one element per column
    run_pass(p.dout, N, OC, {.col_u = one, .col_uabs = one, .col_out = ecol, .col_abs = scol, .unit = true},
             t, sc);
    double sum = 0.0, sum_abs = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      sum += ecol[j];
      sum_abs += scol[j];
    }
    erow[0] = sum;
    srow[0] = sum_abs;
  } else {
    Operand a{}, b{};
    operands(p, &a, &b);
    const Side sa{a, {a0, a1}, {erow, srow}}, sb{b, {b0, b1}, {ecol, scol}};
    if (M <= Nn) {
      three_passes(sa, sb, one, one, true, t, sc);
    } else {
      three_passes(sb, sa, one, one, true, t, sc);
    }
  }
  if (p.kind == GemmKind::kForward && p.bias != nullptr) {  // N terms of every column, one of every row
    const double n = static_cast<double>(N);
    double sb = 0.0, sba = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      const double b = p.bias[j];
      ecol[j] += n * b;
      scol[j] += n * std::fabs(b);
      sb += b;
      sba += std::fabs(b);
    }
    for (int64_t i = 0; i < N; ++i) {
      erow[i] += sb;
      srow[i] += sba;
    }
  }
  if (before != nullptr && p.accumulates()) {
    // The prior content is one more term of every element: its sums add to the prediction and S.
    std::vector<double> r0(M), r1(M), c0(Nn), c1(Nn);
    run_pass(before, M, Nn,
             {.row_v = one,
              .row_vabs = one,
              .col_u = one,
              .col_uabs = one,
              .row_out = r0.data(),
              .row_abs = r1.data(),
              .col_out = c0.data(),
              .col_abs = c1.data(),
              .unit = true},
             t, sc);
    for (int64_t i = 0; i < M; ++i) {
      erow[i] += r0[i];
      srow[i] += r1[i];
    }
    for (int64_t j = 0; j < Nn; ++j) {
      ecol[j] += c0[j];
      scol[j] += c1[j];
    }
  }
  return Status::ok();
}

// The same predictions with index weights 1..n on the other side: row sums weighted by column index,
// column sums weighted by row index (only needed to locate an error; one fixed pass order).
Status HostChecksumKernels::encode_weighted(const GemmProblem& p, const float* before, GemmEncoding* out) {
  PERIGEE_CHECK(p.validate());
  const int64_t N = p.N, C = p.C, OC = p.OC;
  const int64_t M = p.rows(), Nn = p.cols(), K = p.inner();
  const int64_t longest = std::max({N, C, OC});
  const double* one = ones(longest);
  const double* w = weights(longest);
  resize_lines(&out->expected, M, Nn, true);
  double *rw = out->expected.row_weighted.data(), *cw = out->expected.col_weighted.data();
  std::vector<double> aw(K), bw(K);
  const int t = threads_;
  std::vector<double>* sc = &scratch_;
  if (p.kind == GemmKind::kBackwardBias) {
    run_pass(p.dout, N, OC, {.col_u = one, .col_out = cw, .unit = true}, t, sc);  // one row, weight 1
    double sum = 0.0;
    for (int64_t j = 0; j < OC; ++j) sum += static_cast<double>(j + 1) * cw[j];
    rw[0] = sum;
  } else {
    Operand a{}, b{};
    operands(p, &a, &b);
    three_passes({a, {aw.data()}, {rw}}, {b, {bw.data()}, {cw}}, w, nullptr, false, t, sc);
  }
  if (p.kind == GemmKind::kForward && p.bias != nullptr) {
    const double n = static_cast<double>(N), nw = n * (n + 1.0) / 2.0;
    double sbw = 0.0;
    for (int64_t j = 0; j < OC; ++j) {
      cw[j] += nw * p.bias[j];
      sbw += static_cast<double>(j + 1) * p.bias[j];
    }
    for (int64_t i = 0; i < N; ++i) rw[i] += sbw;
  }
  if (before != nullptr && p.accumulates()) {
    std::vector<double> r(M), c(Nn);
    run_pass(before, M, Nn, {.row_v = w, .col_u = w, .row_out = r.data(), .col_out = c.data()}, t, sc);
    for (int64_t i = 0; i < M; ++i) rw[i] += r[i];
    for (int64_t j = 0; j < Nn; ++j) cw[j] += c[j];
  }
  return Status::ok();
}

Status HostChecksumKernels::measure(const GemmProblem& p, const float* c, bool weighted, LineSums* out) {
  PERIGEE_REQUIRE(c != nullptr, StatusCode::kInvalidArgument, "abft measure: null output");
  const int64_t M = p.rows(), Nn = p.cols();
  const double* one = ones(std::max(M, Nn));
  resize_lines(out, M, Nn, false);
  run_pass(c, M, Nn,
           {.row_v = one, .col_u = one, .row_out = out->row.data(), .col_out = out->col.data(), .unit = true},
           threads_, &scratch_);
  if (weighted) {
    const double* w = weights(std::max(M, Nn));
    resize_lines(out, M, Nn, true);
    run_pass(
        c, M, Nn,
        {.row_v = w, .col_u = w, .row_out = out->row_weighted.data(), .col_out = out->col_weighted.data()},
        threads_, &scratch_);
  }
  return Status::ok();
}

Status HostChecksumKernels::reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                                      ElementReference* out) {
  PERIGEE_REQUIRE(row >= 0 && row < p.rows() && col >= 0 && col < p.cols(), StatusCode::kInvalidArgument,
                  "abft reference: element (", row, ", ", col, ") outside [", p.rows(), ", ", p.cols(), "]");
  const int64_t C = p.C, OC = p.OC, K = p.inner();
  double s = 0.0, a = 0.0;
  auto add = [&](double x, double y) {
    const double t = x * y;  // exact: two floats' product fits in a double
    s += t;
    a += std::fabs(t);
  };
  switch (p.kind) {
    case GemmKind::kForward:
      for (int64_t k = 0; k < K; ++k) add(p.inp[row * C + k], p.weight[col * C + k]);
      if (p.bias != nullptr) add(p.bias[col], 1.0);
      break;
    case GemmKind::kBackwardInput:
      for (int64_t k = 0; k < K; ++k) add(p.dout[row * OC + k], p.weight[k * C + col]);
      break;
    case GemmKind::kBackwardWeight:
      for (int64_t k = 0; k < K; ++k) add(p.dout[k * OC + row], p.inp[k * C + col]);
      break;
    case GemmKind::kBackwardBias:
      for (int64_t k = 0; k < K; ++k) add(p.dout[k * OC + col], 1.0);
      break;
  }
  if (before != nullptr && p.accumulates()) add(before[row * p.cols() + col], 1.0);
  out->value = s;
  out->abs = a;
  return Status::ok();
}

Status HostChecksumKernels::read(const float* c, size_t index, float* value) {
  *value = c[index];
  return Status::ok();
}

Status HostChecksumKernels::write(float* c, size_t index, float value) {
  c[index] = value;
  return Status::ok();
}

Status HostChecksumKernels::copy(float* dst, const float* src, size_t n) {
  if (n == 0 || dst == src) return Status::ok();
  PERIGEE_REQUIRE(dst != nullptr && src != nullptr, StatusCode::kInvalidArgument, "abft copy: null pointer");
  const auto chunks = static_cast<int64_t>((n + kCopyChunk - 1) / kCopyChunk);
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kCopyChunk;
    std::memcpy(dst + begin, src + begin, std::min(kCopyChunk, n - begin) * sizeof(float));
  }
  return Status::ok();
}

Status HostChecksumKernels::all_zero(const float* x, size_t n, bool* zero) {
  PERIGEE_REQUIRE(x != nullptr || n == 0, StatusCode::kInvalidArgument, "abft all_zero: null pointer");
  *zero = true;
  // Chunks in order, each scanned whole; the first non-zero chunk ends the scan (a non-zero
  // gradient usually shows in the first chunk).
  for (size_t begin = 0; begin < n && *zero; begin += kCopyChunk) {
    const size_t end = std::min(n, begin + kCopyChunk);
    uint32_t any = 0;
    for (size_t i = begin; i < end; ++i) any |= std::bit_cast<uint32_t>(x[i]);
    *zero = any == 0;
  }
  return Status::ok();
}

}  // namespace perigee::fault
