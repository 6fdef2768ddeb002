// Tests of device selection and of the "auto" storage and fusion keys ([device] activations, logits,
// gelu_fusion): resolve_device_auto's table (the fastest choice only on CUDA with precision bf16 and
// abft off; explicit values kept), the config reading a gelu_fusion boolean as "on"/"off", select_device
// on the CPU, and on a GPU (skipped without one) that precision = "bf16" alone turns the GELU epilogues
// on in the backend it returns.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cuda/device_probe.cuh"
#include "runtime/config.hpp"
#include "runtime/device.hpp"

namespace perigee::runtime {
namespace {

DeviceConfig device_with(const std::string& precision, const std::string& activations = "auto",
                         const std::string& logits = "auto", const std::string& gelu = "auto") {
  DeviceConfig d;
  d.precision = precision;
  d.activations = activations;
  d.logits = logits;
  d.gelu_fusion = gelu;
  return d;
}

struct Resolved {
  const char* activations;
  const char* logits;
  const char* gelu_fusion;
};

void expect_resolved(const DeviceConfig& in, bool abft, bool cuda, Resolved want) {
  const DeviceConfig got = resolve_device_auto(in, abft, cuda);
  const std::string where = std::string(cuda ? "cuda" : "cpu") + ", precision " + in.precision +
                            (abft ? ", abft" : "") + ", in: " + in.activations + "/" + in.logits + "/" +
                            in.gelu_fusion;
  EXPECT_EQ(got.activations, want.activations) << where;
  EXPECT_EQ(got.logits, want.logits) << where;
  EXPECT_EQ(got.gelu_fusion, want.gelu_fusion) << where;
  EXPECT_EQ(got.precision, in.precision) << where;
  EXPECT_EQ(got.device, in.device) << where;
  EXPECT_EQ(got.weight_cache, in.weight_cache) << where;
}

TEST(ResolveDeviceAuto, Bf16OnCudaIsTheFastestSettings) {
  expect_resolved(device_with("bf16"), false, true, {"bf16", "bf16", "on"});
}

TEST(ResolveDeviceAuto, Fp32StorageElsewhere) {
  for (const char* precision : {"fp32", "tf32"}) {
    expect_resolved(device_with(precision), false, true, {"fp32", "fp32", "off"});
  }
  for (const char* precision : {"fp32", "tf32", "bf16"}) {  // the CPU computes in fp32 whatever it says
    expect_resolved(device_with(precision), false, false, {"fp32", "fp32", "off"});
  }
  // ABFT checksums read fp32 GEMM operands and outputs: no bf16 storage, no epilogues.
  expect_resolved(device_with("bf16"), true, true, {"fp32", "fp32", "off"});
}

TEST(ResolveDeviceAuto, ExplicitValuesAreKept) {
  expect_resolved(device_with("bf16", "fp32", "fp32", "off"), false, true, {"fp32", "fp32", "off"});
  expect_resolved(device_with("bf16", "fp32"), false, true, {"fp32", "fp32", "on"});
  expect_resolved(device_with("bf16", "auto", "fp32"), false, true, {"bf16", "fp32", "on"});
  expect_resolved(device_with("bf16", "auto", "auto", "off"), false, true, {"bf16", "bf16", "off"});
  expect_resolved(device_with("fp32", "bf16"), false, false, {"bf16", "bf16", "off"});
  expect_resolved(device_with("fp32", "bf16", "fp32"), false, true, {"bf16", "fp32", "off"});
  expect_resolved(device_with("bf16", "auto", "auto", "on"), false, false, {"fp32", "fp32", "on"});
}

TEST(ResolveDeviceAuto, Bf16LogitsBringBf16Activations) {
  // logits = "bf16" needs bf16 activations: "auto" ones follow, on the CPU too.
  expect_resolved(device_with("fp32", "auto", "bf16"), false, false, {"bf16", "bf16", "off"});
  expect_resolved(device_with("fp32", "auto", "bf16"), false, true, {"bf16", "bf16", "off"});
}

// Sensible settings that validation must accept (each resolves as the table above says).
TEST(ResolveDeviceAuto, SensibleSettingsPassValidation) {
  const std::vector<DeviceConfig> sensible = {
      device_with("fp32"),
      device_with("bf16"),
      device_with("tf32", "bf16"),
      device_with("fp32", "auto", "bf16"),         // logits bf16 bring bf16 activations
      device_with("bf16", "fp32", "fp32", "on"),   // GELU epilogues over fp32 storage
      device_with("bf16", "bf16", "fp32", "off"),  // bf16 activations, fp32 logits
      device_with("bf16", "auto", "auto", "on"),
  };
  for (const DeviceConfig& d : sensible) {
    Config c;
    c.device = d;
    const Status s = validate_config(&c);
    EXPECT_TRUE(s.is_ok()) << d.precision << " " << d.activations << " " << d.logits << " " << d.gelu_fusion
                           << ": " << s.to_string();
  }
  Config abft;  // ABFT with every [device] default
  abft.device.precision = "bf16";
  abft.fault.abft = true;
  EXPECT_TRUE(validate_config(&abft).is_ok());
}

TEST(ResolveDeviceAuto, EveryResolvedConfigPassesValidation) {
  for (const char* precision : {"fp32", "tf32", "bf16"}) {
    for (const char* acts : {"auto", "fp32", "bf16"}) {
      for (const char* logits : {"auto", "fp32", "bf16"}) {
        for (const char* gelu : {"auto", "on", "off"}) {
          for (bool abft : {false, true}) {
            Config c;
            c.device = device_with(precision, acts, logits, gelu);
            c.fault.abft = abft;
            if (!validate_config(&c).is_ok()) continue;  // rejected before any device is chosen
            for (bool cuda : {false, true}) {
              Config r = c;
              r.device = resolve_device_auto(c.device, abft, cuda);
              const Status s = validate_config(&r);
              EXPECT_TRUE(s.is_ok()) << precision << " " << acts << " " << logits << " " << gelu
                                     << (abft ? " abft" : "") << (cuda ? " cuda" : " cpu") << ": "
                                     << s.to_string();
              EXPECT_NE(r.device.activations, "auto");
              EXPECT_NE(r.device.logits, "auto");
              EXPECT_NE(r.device.gelu_fusion, "auto");
            }
          }
        }
      }
    }
  }
}

TEST(DeviceConfigKeys, GeluFusionReadsBooleansAsOnAndOff) {
  Config c;
  ASSERT_TRUE(
      parse_config("[data]\ntrain_file = \"t.bin\"\n[device]\nprecision = \"bf16\"\ngelu_fusion = true\n",
                   "x.toml", {}, &c)
          .is_ok());
  EXPECT_EQ(c.device.gelu_fusion, "on");
  ASSERT_TRUE(
      parse_config("[data]\ntrain_file = \"t.bin\"\n", "x.toml", {"--device.gelu_fusion=false"}, &c).is_ok());
  EXPECT_EQ(c.device.gelu_fusion, "off");
  ASSERT_TRUE(parse_config("[data]\ntrain_file = \"t.bin\"\n", "x.toml", {}, &c).is_ok());
  EXPECT_EQ(c.device.gelu_fusion, "auto");
  EXPECT_EQ(c.device.activations, "auto");
  EXPECT_EQ(c.device.logits, "auto");
  const Status bad =
      parse_config("[data]\ntrain_file = \"t.bin\"\n[device]\ngelu_fusion = 1\n", "x.toml", {}, &c);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("x.toml:4: [device] gelu_fusion: expected one of auto, on, off or a boolean, "
                               "got integer 1"),
            std::string::npos)
      << bad.message();
  const Status word =
      parse_config("[data]\ntrain_file = \"t.bin\"\n", "x.toml", {"device.gelu_fusion=yes"}, &c);
  ASSERT_FALSE(word.is_ok());
  EXPECT_NE(word.message().find("[device] gelu_fusion: must be one of auto, on, off (got \"yes\")"),
            std::string::npos)
      << word.message();
  // A string key that is no switch still takes the text "true" as a string.
  const Status other =
      parse_config("[data]\ntrain_file = \"t.bin\"\n[run]\nprogress = true\n", "x.toml", {}, &c);
  ASSERT_FALSE(other.is_ok());
  EXPECT_NE(other.message().find("expected a string, got boolean true"), std::string::npos)
      << other.message();
}

TEST(SelectDevice, TheCpuResolvesAutoToFp32) {
  Config c;
  c.device.device = "cpu";
  c.device.precision = "bf16";
  c.device.threads = 1;
  DeviceSelection sel;
  const Status s = select_device(c, 0, 1, &sel);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(sel.cuda_device, -1);
  EXPECT_EQ(sel.kind, "cpu");  // what the ranks compare (rank_agreement.hpp)
  EXPECT_EQ(sel.resolved.activations, "fp32");
  EXPECT_EQ(sel.resolved.logits, "fp32");
  EXPECT_EQ(sel.resolved.gelu_fusion, "off");
  EXPECT_FALSE(sel.backend->fuses_gelu());
}

TEST(SelectDevice, Bf16PrecisionOnAGpuTurnsTheFastestSettingsOn) {
  std::vector<kernels::cuda::DeviceInfo> gpus;
  const Status probe = kernels::cuda::probe_devices(&gpus);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  for (bool abft : {false, true}) {
    Config c;
    c.device.device = "cuda";
    c.device.precision = "bf16";
    c.fault.abft = abft;
    DeviceSelection sel;
    const Status s = select_device(c, 0, 1, &sel);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(sel.cuda_device, 0);
    EXPECT_EQ(sel.kind, perigee::str_cat("cuda sm_", gpus[0].sm_major, gpus[0].sm_minor));
    EXPECT_EQ(sel.resolved.activations, abft ? "fp32" : "bf16");
    EXPECT_EQ(sel.resolved.logits, abft ? "fp32" : "bf16");
    EXPECT_EQ(sel.resolved.gelu_fusion, abft ? "off" : "on");
    EXPECT_EQ(sel.backend->fuses_gelu(), !abft) << (abft ? "abft" : "no abft");
  }
}

}  // namespace
}  // namespace perigee::runtime
