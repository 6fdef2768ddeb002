// AbftBackend over a CudaBackend with the CUDA ChecksumKernels (fault/cuda): clean GEMMs give the
// CudaBackend's own outputs bit for bit; a flipped bit in one element of each output (forward, dinp,
// dweight, dbias) is corrected back to the clean bits; several wrong elements are recomputed to the
// clean result; the thresholds of the device checksums match the host ChecksumKernels on the same
// data within 1e-6 relative; and the working memory counted is what is reserved and covers a step.
// Compiled by the C++ compiler (factories and the probe only). Without a usable CUDA device every
// test is skipped with the probe's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fault/abft_backend.hpp"
#include "fault/abft_gemm.hpp"
#include "fault/cuda/abft_checksums_factory.hpp"
#include "fault/host_checksum_kernels.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "kernels/working_memory.hpp"

namespace perigee::fault {
namespace {

// ---- fixture: one CudaBackend for the whole binary

struct Device {
  std::unique_ptr<kernels::Backend> gpu;
  std::string skip_reason;  // non-empty: no usable device, skip
  Status error;             // a device was found but the backend could not be made: fail
};

Device& device() {
  static Device d = [] {
    Device r;
    std::vector<kernels::cuda::DeviceInfo> devices;
    const Status probe = kernels::cuda::probe_devices(&devices);
    if (!probe.is_ok()) {
      r.skip_reason = probe.message();
      return r;
    }
    r.error = kernels::cuda::make_cuda_backend(0, &r.gpu);
    return r;
  }();
  return d;
}

// A device buffer of the CudaBackend, filled and read through its copies.
class Buffer {
 public:
  Buffer(kernels::Backend& backend, const std::vector<float>& values)
      : backend_(&backend), n_(values.size()) {
    void* p = nullptr;
    PERIGEE_CHECK_OR_DIE(backend.allocate(&p, n_ * sizeof(float)));
    data_ = static_cast<float*>(p);
    upload(values);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { backend_->release(data_); }

  float* data() { return data_; }
  void upload(const std::vector<float>& values) {
    PERIGEE_CHECK_OR_DIE(backend_->copy_to_device(data_, values.data(), n_ * sizeof(float)));
  }
  std::vector<float> download() const {
    std::vector<float> out(n_);
    PERIGEE_CHECK_OR_DIE(backend_->copy_to_host(out.data(), data_, n_ * sizeof(float)));
    return out;
  }

 private:
  kernels::Backend* backend_;
  size_t n_;
  float* data_ = nullptr;
};

std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return false;
  }
  return true;
}

// Flips bit `bit` of element `index` of device buffer `out` through the backend's copies.
void flip_element(kernels::Backend& backend, float* out, size_t index, int bit) {
  float v = 0.0f;
  PERIGEE_CHECK_OR_DIE(backend.copy_to_host(&v, out + index, sizeof v));
  v = std::bit_cast<float>(std::bit_cast<uint32_t>(v) ^ (1u << bit));
  PERIGEE_CHECK_OR_DIE(backend.copy_to_device(out + index, &v, sizeof v));
}

constexpr int kN = 96, kC = 72, kOC = 120;  // not multiples of the kernels' tiles

// One layer's operands and gradients on the device, and its clean outputs from the CudaBackend alone.
struct Layer {
  explicit Layer(kernels::Backend& gpu)
      : inp_h(random_vector(size_t{kN} * kC, 1)),
        weight_h(random_vector(size_t{kOC} * kC, 2)),
        bias_h(random_vector(kOC, 3)),
        dout_h(random_vector(size_t{kN} * kOC, 4)),
        dinp0(random_vector(size_t{kN} * kC, 5)),  // non-zero prior gradients: snapshots are used
        dweight0(random_vector(size_t{kOC} * kC, 6)),
        dbias0(random_vector(kOC, 7)),
        inp(gpu, inp_h),
        weight(gpu, weight_h),
        bias(gpu, bias_h),
        dout(gpu, dout_h),
        out(gpu, std::vector<float>(size_t{kN} * kOC)),
        dinp(gpu, dinp0),
        dweight(gpu, dweight0),
        dbias(gpu, dbias0) {}

  void reset() {
    out.upload(std::vector<float>(size_t{kN} * kOC));
    dinp.upload(dinp0);
    dweight.upload(dweight0);
    dbias.upload(dbias0);
  }
  Status forward(kernels::Backend& b) {
    return b.matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), kN, kC, kOC);
  }
  Status backward(kernels::Backend& b) {
    return b.matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                             weight.data(), kN, kC, kOC);
  }
  std::vector<std::vector<float>> outputs() const {
    return {out.download(), dinp.download(), dweight.download(), dbias.download()};
  }

  std::vector<float> inp_h, weight_h, bias_h, dout_h, dinp0, dweight0, dbias0;
  Buffer inp, weight, bias, dout, out, dinp, dweight, dbias;
};

class CudaAbft : public ::testing::Test {
 protected:
  void SetUp() override {
    Device& d = device();
    if (!d.skip_reason.empty()) GTEST_SKIP() << d.skip_reason;
    ASSERT_TRUE(d.error.is_ok()) << d.error.to_string();
    gpu_ = d.gpu.get();
    std::unique_ptr<ChecksumKernels> kernels;
    ASSERT_TRUE(cuda::make_cuda_checksum_kernels(gpu_, &kernels).is_ok());
    abft_ = std::make_unique<AbftBackend>(gpu_, AbftOptions{}, std::move(kernels));
    layer_ = std::make_unique<Layer>(*gpu_);
    // The clean outputs of the CudaBackend alone.
    ASSERT_TRUE(layer_->forward(*gpu_).is_ok());
    ASSERT_TRUE(layer_->backward(*gpu_).is_ok());
    clean_ = layer_->outputs();
    layer_->reset();
  }
  void TearDown() override {
    abft_.reset();
    layer_.reset();
  }

  // Runs forward and backward through the AbftBackend and expects the clean outputs' exact bits.
  void run_and_expect_clean_outputs() {
    ASSERT_TRUE(layer_->forward(*abft_).is_ok());
    ASSERT_TRUE(layer_->backward(*abft_).is_ok());
    const auto got = layer_->outputs();
    const char* names[] = {"out", "dinp", "dweight", "dbias"};
    for (size_t k = 0; k < got.size(); ++k) EXPECT_TRUE(same_bits(got[k], clean_[k])) << names[k];
  }

  kernels::Backend* gpu_ = nullptr;
  std::unique_ptr<AbftBackend> abft_;
  std::unique_ptr<Layer> layer_;
  std::vector<std::vector<float>> clean_;
};

constexpr GemmKind kKinds[] = {GemmKind::kForward, GemmKind::kBackwardInput, GemmKind::kBackwardWeight,
                               GemmKind::kBackwardBias};

TEST_F(CudaAbft, CleanGemmsMatchTheInnerBackend) {
  run_and_expect_clean_outputs();
  EXPECT_EQ(abft_->stats().gemms_checked, 4u);
  EXPECT_EQ(abft_->stats().faults_detected, 0u);
  EXPECT_LT(abft_->stats().max_clean_ratio, 1.0);
  // Zero prior gradients take the no-snapshot path.
  layer_->dinp.upload(std::vector<float>(size_t{kN} * kC));
  layer_->dweight.upload(std::vector<float>(size_t{kOC} * kC));
  layer_->dbias.upload(std::vector<float>(kOC));
  ASSERT_TRUE(layer_->backward(*abft_).is_ok());
  EXPECT_EQ(abft_->stats().faults_detected, 0u);
}

TEST_F(CudaAbft, CorrectsOneFlippedElementInEveryOutput) {
  for (GemmKind kind : kKinds) {
    SCOPED_TRACE(gemm_kind_name(kind));
    layer_->reset();
    abft_->reset_stats();
    bool injected = false;
    std::vector<AbftEvent> events;
    abft_->set_event_callback([&](const AbftEvent& e) { events.push_back(e); });
    abft_->set_output_fault_hook([&](float* out, size_t n, GemmKind k) {
      if (k != kind || injected) return;
      injected = true;
      flip_element(*gpu_, out, n / 2 + 1 < n ? n / 2 + 1 : 0, 27);  // an exponent bit
    });
    run_and_expect_clean_outputs();
    EXPECT_TRUE(injected);
    EXPECT_EQ(abft_->stats().corrected, 1u);
    EXPECT_EQ(abft_->stats().recomputed, 0u);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].outcome, AbftOutcome::kCorrected);
    EXPECT_EQ(events[0].correction.flip_mask, 1u << 27);
  }
  abft_->set_output_fault_hook(nullptr);
  abft_->set_event_callback(nullptr);
}

TEST_F(CudaAbft, RecomputesSeveralWrongElements) {
  for (GemmKind kind : kKinds) {
    SCOPED_TRACE(gemm_kind_name(kind));
    layer_->reset();
    abft_->reset_stats();
    bool injected = false;
    abft_->set_output_fault_hook([&](float* out, size_t n, GemmKind k) {
      if (k != kind || injected) return;
      injected = true;
      for (size_t index : {size_t{0}, n / 3 + 5, n - 1})
        flip_element(*gpu_, out, index, 30);  // exponent MSB: always detected
    });
    run_and_expect_clean_outputs();
    EXPECT_TRUE(injected);
    EXPECT_EQ(abft_->stats().faults_detected, 1u);
    EXPECT_EQ(abft_->stats().recomputed, 1u);
    EXPECT_EQ(abft_->stats().escalated, 0u);
  }
  abft_->set_output_fault_hook(nullptr);
}

// The working memory an AbftBackend over the CudaBackend counts for one layer's GEMMs (beyond the
// CudaBackend's own) is what it reserves, and a forward plus an accumulating backward (non-zero prior
// gradients: the snapshot is taken) grow none of it. Without the reservation the same calls grow it
// on demand to at least that much (the workspace grows by doubling).
TEST_F(CudaAbft, ReservesTheWorkingMemoryItCounts) {
  using kernels::DType;
  using kernels::OpCall;
  constexpr int N = 1100, C = 72, OC = 40;  // N over one column-pass chunk: partials of two chunks
  const std::vector<OpCall> calls = {
      OpCall::matmul_forward(N, C, OC, DType::kF32, DType::kF32, true),
      OpCall::matmul_backward(N, C, OC, DType::kF32, DType::kF32, DType::kF32, true, true, true, true)};
  // By hand (abft_checksums.cu): the dweight GEMM's encode takes the most workspace, 4K + 2M + 2Nn
  // line doubles (K = 1100, M = 40, Nn = 72) plus the largest pass's partials, 2 * 2 chunks * 72;
  // then weights 1..1100 and 4 single values; then the fp32 snapshot of dweight and dbias.
  constexpr uint64_t kChecksums = (4 * 1100 + 2 * 40 + 2 * 72 + 2 * 2 * 72 + 1100 + 4) * sizeof(double);
  constexpr uint64_t kSnapshot = (uint64_t{OC} * C + OC) * sizeof(float);
  uint64_t inner = 0;
  ASSERT_TRUE(gpu_->working_memory_bytes(calls, &inner).is_ok());

  const auto inp_h = random_vector(size_t{N} * C, 21), weight_h = random_vector(size_t{OC} * C, 22);
  const auto bias_h = random_vector(OC, 23), dout_h = random_vector(size_t{N} * OC, 24, -0.1f, 0.1f);
  Buffer inp(*gpu_, inp_h), weight(*gpu_, weight_h), bias(*gpu_, bias_h), dout(*gpu_, dout_h);
  Buffer out(*gpu_, std::vector<float>(size_t{N} * OC)), dinp(*gpu_, std::vector<float>(size_t{N} * C));
  Buffer dweight(*gpu_, random_vector(size_t{OC} * C, 25)), dbias(*gpu_, random_vector(OC, 26));
  for (const bool reserve : {true, false}) {
    SCOPED_TRACE(reserve ? "reserved" : "on demand");
    std::unique_ptr<ChecksumKernels> kernels;
    ASSERT_TRUE(cuda::make_cuda_checksum_kernels(gpu_, &kernels).is_ok());
    AbftBackend abft(gpu_, AbftOptions{}, std::move(kernels));
    uint64_t counted = 0;
    ASSERT_TRUE(abft.working_memory_bytes(calls, &counted).is_ok());
    EXPECT_EQ(counted, inner + kChecksums + kSnapshot);
    if (reserve) {
      ASSERT_TRUE(abft.reserve_working_memory(calls).is_ok());
    }
    EXPECT_EQ(abft.held_working_bytes(), reserve ? kChecksums + kSnapshot : 0u);
    ASSERT_TRUE(abft.matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC).is_ok());
    ASSERT_TRUE(abft.matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                                     weight.data(), N, C, OC)
                    .is_ok());
    EXPECT_EQ(abft.stats().gemms_checked, 4u);
    if (reserve) {
      EXPECT_EQ(abft.held_working_bytes(), kChecksums + kSnapshot);
    } else {
      EXPECT_GE(abft.held_working_bytes(), kChecksums + kSnapshot);
    }
  }
}

// Relative difference with a floor for exact zeros.
double rel(double a, double b) {
  return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), 1e-300});
}

TEST_F(CudaAbft, ThresholdsMatchTheHostChecksums) {
  // N above the column passes' row chunk, so chunk partials are combined.
  constexpr int N = 1100, C = 72, OC = 40;
  const auto inp_h = random_vector(size_t{N} * C, 11, -2.0f, 2.0f);
  const auto weight_h = random_vector(size_t{OC} * C, 12);
  const auto bias_h = random_vector(OC, 13);
  const auto dout_h = random_vector(size_t{N} * OC, 14, -0.1f, 0.1f);
  const auto dinp_h = random_vector(size_t{N} * C, 15);
  const auto dweight_h = random_vector(size_t{OC} * C, 16);
  const auto dbias_h = random_vector(OC, 17);
  Buffer inp(*gpu_, inp_h), weight(*gpu_, weight_h), bias(*gpu_, bias_h), dout(*gpu_, dout_h);
  Buffer dinp(*gpu_, dinp_h), dweight(*gpu_, dweight_h), dbias(*gpu_, dbias_h);

  std::unique_ptr<ChecksumKernels> device_kernels;
  ASSERT_TRUE(cuda::make_cuda_checksum_kernels(gpu_, &device_kernels).is_ok());
  HostChecksumKernels host_kernels(2);
  AbftGemm on_device(device_kernels.get()), on_host(&host_kernels);

  struct Case {
    GemmProblem device, host;
    const float *device_before, *host_before;
  };
  const Case cases[] = {
      {GemmProblem::forward(inp.data(), weight.data(), bias.data(), N, C, OC),
       GemmProblem::forward(inp_h.data(), weight_h.data(), bias_h.data(), N, C, OC), nullptr, nullptr},
      {GemmProblem::backward_input(dout.data(), weight.data(), N, C, OC),
       GemmProblem::backward_input(dout_h.data(), weight_h.data(), N, C, OC), dinp.data(), dinp_h.data()},
      {GemmProblem::backward_weight(dout.data(), inp.data(), N, C, OC),
       GemmProblem::backward_weight(dout_h.data(), inp_h.data(), N, C, OC), dweight.data(), dweight_h.data()},
      {GemmProblem::backward_bias(dout.data(), N, OC), GemmProblem::backward_bias(dout_h.data(), N, OC),
       dbias.data(), dbias_h.data()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(gemm_kind_name(c.host.kind));
    ASSERT_TRUE(on_device.encode(c.device, c.device_before).is_ok());
    ASSERT_TRUE(on_host.encode(c.host, c.host_before).is_ok());
    double worst = 0.0;
    for (int64_t i = 0; i < c.host.rows(); ++i) {
      worst = std::max(worst, rel(on_device.row_threshold(i), on_host.row_threshold(i)));
      worst = std::max(worst, rel(on_device.row_bound(i), on_host.row_bound(i)));
    }
    for (int64_t j = 0; j < c.host.cols(); ++j) {
      worst = std::max(worst, rel(on_device.col_threshold(j), on_host.col_threshold(j)));
      worst = std::max(worst, rel(on_device.col_bound(j), on_host.col_bound(j)));
    }
    EXPECT_LE(worst, 1e-6);
  }

  // The same element references and weighted predictions: a flagged element is located and corrected
  // identically. Element (3, 5) of the forward output, computed on each side.
  ElementReference dref, href;
  ASSERT_TRUE(device_kernels->reference(cases[0].device, nullptr, 3, 5, &dref).is_ok());
  ASSERT_TRUE(host_kernels.reference(cases[0].host, nullptr, 3, 5, &href).is_ok());
  EXPECT_LE(std::fabs(dref.value - href.value), 1e-12 * href.abs);
  EXPECT_LE(rel(dref.abs, href.abs), 1e-12);
  for (const Case& c : cases) {
    SCOPED_TRACE(gemm_kind_name(c.host.kind));
    GemmEncoding denc, henc;
    ASSERT_TRUE(device_kernels->encode_weighted(c.device, c.device_before, &denc).is_ok());
    ASSERT_TRUE(host_kernels.encode_weighted(c.host, c.host_before, &henc).is_ok());
    ASSERT_EQ(denc.expected.row_weighted.size(), henc.expected.row_weighted.size());
    ASSERT_EQ(denc.expected.col_weighted.size(), henc.expected.col_weighted.size());
    GemmEncoding dplain, hplain;
    ASSERT_TRUE(device_kernels->encode(c.device, c.device_before, &dplain).is_ok());
    ASSERT_TRUE(host_kernels.encode(c.host, c.host_before, &hplain).is_ok());
    // Differences relative to the line's magnitude scale (the sums themselves may cancel to ~0).
    for (size_t i = 0; i < henc.expected.row_weighted.size(); ++i) {
      const double scale = hplain.row_abs[i] * static_cast<double>(c.host.cols()) + 1e-300;
      EXPECT_LE(std::fabs(denc.expected.row_weighted[i] - henc.expected.row_weighted[i]) / scale, 1e-12);
    }
    for (size_t j = 0; j < henc.expected.col_weighted.size(); ++j) {
      const double scale = hplain.col_abs[j] * static_cast<double>(c.host.rows()) + 1e-300;
      EXPECT_LE(std::fabs(denc.expected.col_weighted[j] - henc.expected.col_weighted[j]) / scale, 1e-12);
    }
  }
}

}  // namespace
}  // namespace perigee::fault
