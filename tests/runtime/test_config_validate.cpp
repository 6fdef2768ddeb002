// Tests of config validation: every per-key rule and cross-field rule fails with a message that
// names the key and the allowed range, boundary values pass, and the derived padded_vocab.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "runtime/config.hpp"
#include "runtime/optimizer.hpp"
#include "tests/runtime/config_test_util.hpp"

namespace perigee::runtime {
namespace {

// ----------------------------------------------------------------------------------------------
// Validation: each rule has a failing case whose message names the key and the allowed range.

struct RuleCase {
  const char* name;
  std::function<void(Config&)> change;
  const char* key;   // "[section] key"
  const char* rule;  // text of the allowed range
};

TEST(ConfigValidate, EveryRuleFails) {
  const std::vector<RuleCase> cases = {
      {"n_layer", [](Config& c) { c.model.n_layer = 0; }, "[model] n_layer", "must be in [1, 4096] (got 0)"},
      {"n_layer high", [](Config& c) { c.model.n_layer = 1000000; }, "[model] n_layer",
       "must be in [1, 4096] (got 1000000)"},
      {"threads high", [](Config& c) { c.device.threads = 100000; }, "[device] threads",
       "must be in [0, 4096] (got 100000)"},
      {"sample_prompt outside the vocabulary",
       [](Config& c) {
         c.model.vocab_size = 91;
         c.train.sample_tokens = 20;
         c.train.sample_prompt = "Az";
       },
       "[train] sample_prompt", "byte 122 at position 1 is outside the vocabulary [0, 91)"},
      {"empty sample_prompt (a newline) outside the vocabulary",
       [](Config& c) {
         c.model.vocab_size = 10;
         c.train.sample_tokens = 1;
         c.train.sample_prompt = "";
       },
       "[train] sample_prompt", "byte 10 at position 0 is outside the vocabulary [0, 10)"},
      {"n_head", [](Config& c) { c.model.n_head = -1; }, "[model] n_head", "must be > 0 (got -1)"},
      {"n_embd", [](Config& c) { c.model.n_embd = 0; }, "[model] n_embd", "must be in [1, 1048576] (got 0)"},
      {"context", [](Config& c) { c.model.context = 0; }, "[model] context", "must be > 0"},
      {"vocab_size", [](Config& c) { c.model.vocab_size = 0; }, "[model] vocab_size", "must be > 0"},
      {"n_embd % n_head",
       [](Config& c) {
         c.model.n_embd = 130;
         c.model.n_head = 4;
       },
       "[model] n_embd", "must be a multiple of [model] n_head = 4 (got 130)"},
      {"seq_len <= context", [](Config& c) { c.train.seq_len = 129; }, "[train] seq_len",
       "must be in [1, [model] context] = [1, 128] (got 129)"},
      {"seq_len >= 1", [](Config& c) { c.train.seq_len = 0; }, "[train] seq_len", "must be >= 1 (got 0)"},
      {"batch_size", [](Config& c) { c.train.batch_size = 0; }, "[train] batch_size", "must be >= 1 (got 0)"},
      {"tokens per step beyond int",
       [](Config& c) {
         c.model.context = 1024;
         c.train.seq_len = 1024;
         c.train.batch_size = 1 << 21;
       },
       "[train] batch_size",
       "batch_size x seq_len = 2147483648 tokens per step exceeds 2^31 - 1, the kernels' token index range "
       "(got 2097152 x 1024)"},
      {"micro_batch >= 0", [](Config& c) { c.train.micro_batch = -1; }, "[train] micro_batch",
       "must be >= 0 (got -1)"},
      {"micro_batch <= batch_size", [](Config& c) { c.train.micro_batch = 17; }, "[train] micro_batch",
       "must be <= [train] batch_size = 16 (got 17;"},
      {"lr zero", [](Config& c) { c.train.lr = 0; }, "[train] lr", "must be > 0 (got 0)"},
      {"lr nan", [](Config& c) { c.train.lr = std::numeric_limits<double>::quiet_NaN(); }, "[train] lr",
       "must be a finite number > 0"},
      {"lr inf", [](Config& c) { c.train.lr = std::numeric_limits<double>::infinity(); }, "[train] lr",
       "must be a finite number > 0 (got inf)"},
      {"min_lr_ratio low", [](Config& c) { c.train.min_lr_ratio = -0.1; }, "[train] min_lr_ratio",
       "must be in [0, 1] (got -0.1)"},
      {"min_lr_ratio high", [](Config& c) { c.train.min_lr_ratio = 1.5; }, "[train] min_lr_ratio",
       "must be in [0, 1] (got 1.5)"},
      {"warmup_steps", [](Config& c) { c.train.warmup_steps = -1; }, "[train] warmup_steps",
       "must be >= 0 (got -1)"},
      {"steps", [](Config& c) { c.train.steps = 0; }, "[train] steps", "must be >= 1 (got 0)"},
      {"beta1", [](Config& c) { c.train.beta1 = 1.0; }, "[train] beta1", "must be in [0, 1) (got 1)"},
      {"beta2", [](Config& c) { c.train.beta2 = -0.5; }, "[train] beta2", "must be in [0, 1) (got -0.5)"},
      {"eps", [](Config& c) { c.train.eps = 0; }, "[train] eps", "must be > 0 (got 0)"},
      {"weight_decay", [](Config& c) { c.train.weight_decay = -0.1; }, "[train] weight_decay",
       "must be >= 0"},
      {"grad_clip", [](Config& c) { c.train.grad_clip = -1; }, "[train] grad_clip", "must be >= 0 (got -1)"},
      {"val_every", [](Config& c) { c.train.val_every = -1; }, "[train] val_every", "must be >= 0"},
      {"val_batches", [](Config& c) { c.train.val_batches = 0; }, "[train] val_batches",
       "must be >= 1 when [train] val_every > 0 (got 0, val_every = 50)"},
      {"val_batches negative",
       [](Config& c) {
         c.train.val_every = 0;
         c.train.val_batches = -1;
       },
       "[train] val_batches", "must be >= 0 (got -1)"},
      {"log_every", [](Config& c) { c.train.log_every = -1; }, "[train] log_every", "must be >= 0 (got -1)"},
      {"sample_tokens", [](Config& c) { c.train.sample_tokens = -1; }, "[train] sample_tokens",
       "must be >= 0"},
      {"sample_temperature", [](Config& c) { c.train.sample_temperature = 0; }, "[train] sample_temperature",
       "must be > 0 (got 0)"},
      {"train_file", [](Config& c) { c.data.train_file = ""; }, "[data] train_file", "must not be empty"},
      {"val_file", [](Config& c) { c.data.val_file = ""; }, "[data] val_file",
       "must not be empty when [train] val_every > 0"},
      {"device", [](Config& c) { c.device.device = "gpu"; }, "[device] device",
       "must be one of cpu, cuda, auto (got \"gpu\")"},
      {"threads", [](Config& c) { c.device.threads = -1; }, "[device] threads",
       "must be in [0, 4096] (got -1)"},
      {"backend", [](Config& c) { c.comm.backend = "gloo"; }, "[comm] backend",
       "must be one of mpi, nccl, links, auto (got \"gloo\")"},
      {"bucket_mb", [](Config& c) { c.comm.bucket_mb = -1; }, "[comm] bucket_mb",
       "must be in [0, 1048576] (got -1)"},
      {"bucket_mb huge", [](Config& c) { c.comm.bucket_mb = 1e14; }, "[comm] bucket_mb",
       "must be in [0, 1048576]"},
      {"n_embd huge", [](Config& c) { c.model.n_embd = 1 << 30; }, "[model] n_embd",
       "must be in [1, 1048576]"},
      {"beta1 rounds to 1", [](Config& c) { c.train.beta1 = 0.99999999; }, "[train] beta1",
       "rounds to 1 in fp32, the optimizer's precision; must be < 1 - 2^-25 (got 0.99999999)"},
      {"beta2 rounds to 1", [](Config& c) { c.train.beta2 = 1.0 - 1e-8; }, "[train] beta2",
       "rounds to 1 in fp32"},
      {"eps rounds to 0", [](Config& c) { c.train.eps = 1e-46; }, "[train] eps",
       "below the smallest normal fp32 number"},
      {"lr overflows fp32", [](Config& c) { c.train.lr = 1e39; }, "[train] lr", "overflows fp32"},
      {"weight_decay overflows fp32", [](Config& c) { c.train.weight_decay = 1e39; }, "[train] weight_decay",
       "overflows fp32"},
      {"checkpoint timeout under 1 s", [](Config& c) { c.checkpoint.timeout_s = 0.2; },
       "[checkpoint] timeout_s", "must be 0 (no limit) or at least 1"},
      {"grad_dtype", [](Config& c) { c.comm.grad_dtype = "fp16"; }, "[comm] grad_dtype",
       "must be one of fp32, bf16 (got \"fp16\")"},
      {"activations", [](Config& c) { c.device.activations = "fp16"; }, "[device] activations",
       "must be one of auto, fp32, bf16 (got \"fp16\")"},
      {"bf16 activations with abft",
       [](Config& c) {
         c.device.activations = "bf16";
         c.fault.abft = true;
       },
       "[device] activations", "\"bf16\" cannot run with [fault] abft = true"},
      {"logits", [](Config& c) { c.device.logits = "fp16"; }, "[device] logits",
       "must be one of auto, fp32, bf16 (got \"fp16\")"},
      {"bf16 logits with fp32 activations",
       [](Config& c) {
         c.device.logits = "bf16";
         c.device.activations = "fp32";
       },
       "[device] logits", "\"bf16\" needs bf16 activations"},
      {"bf16 logits with auto activations and abft",
       [](Config& c) {
         c.device.logits = "bf16";
         c.fault.abft = true;
       },
       "[device] logits",
       "\"bf16\" needs bf16 activations (the logits' gradient, of the activations' type, overwrites "
       "them), and [device] activations = \"auto\" with [fault] abft = true gives fp32 ones"},
      {"gelu_fusion", [](Config& c) { c.device.gelu_fusion = "yes"; }, "[device] gelu_fusion",
       "must be one of auto, on, off (got \"yes\")"},
      {"gelu_fusion without bf16 precision", [](Config& c) { c.device.gelu_fusion = "on"; },
       "[device] gelu_fusion",
       "\"on\" needs [device] precision = \"bf16\" (the GELU epilogues are bf16 tensor-core "
       "GEMMs; got precision = \"fp32\")"},
      {"gelu_fusion with abft",
       [](Config& c) {
         c.device.precision = "bf16";
         c.device.gelu_fusion = "on";
         c.fault.abft = true;
       },
       "[device] gelu_fusion", "cannot run with [fault] abft = true"},
      {"run dir", [](Config& c) { c.run.dir = ""; }, "[run] dir", "must not be empty"},
      {"progress", [](Config& c) { c.run.progress = "yes"; }, "[run] progress",
       "must be one of auto, on, off (got \"yes\")"},
      {"padded_vocab negative", [](Config& c) { c.model.padded_vocab = -1; }, "[model] padded_vocab",
       "must be >= 0 (got -1)"},
      {"padded_vocab < vocab", [](Config& c) { c.model.padded_vocab = 200; }, "[model] padded_vocab",
       "must be 0 (derive) or >= [model] vocab_size = 256 (got 200)"},
      {"vocab_size too large to pad", [](Config& c) { c.model.vocab_size = INT_MAX; }, "[model] vocab_size",
       "must be <= 2147483520"},
  };
  for (const RuleCase& rc : cases) {
    Config config;
    rc.change(config);
    Status s = validate_config(&config);
    ASSERT_FALSE(s.is_ok()) << rc.name;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << rc.name;
    EXPECT_CONTAINS(s.message(), std::string("config: ") + rc.key + ": " + rc.rule);
  }
}

TEST(ConfigValidate, BoundaryValuesPass) {
  Config c;
  c.model.n_embd = 96;
  c.model.n_head = 3;
  c.train.seq_len = c.model.context;
  c.train.min_lr_ratio = 0;
  c.train.warmup_steps = 0;
  c.train.beta1 = 0;
  c.train.beta2 = 0.999999;
  c.train.weight_decay = 0;
  c.train.grad_clip = 0;
  c.train.val_every = 0;
  c.train.val_batches = 0;  // allowed when validation is off
  c.data.val_file = "";     // likewise
  c.device.threads = 0;
  c.train.log_every = 0;
  c.device.device = "cuda";
  c.run.progress = "off";
  c.train.seq_len = 1;
  c.train.batch_size = 1;
  c.train.steps = 1;
  c.model.n_layer = 4096;
  c.model.vocab_size = 123;  // 'z' (122) is the prompt's largest byte
  c.train.sample_tokens = 1;
  c.train.sample_prompt = "xyz";
  c.checkpoint.timeout_s = 1;
  Status s = validate_config(&c);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  c.train.min_lr_ratio = 1;
  c.train.seq_len = c.model.context;
  c.train.micro_batch = c.train.batch_size;
  s = validate_config(&c);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
}

TEST(ConfigValidate, ReportsEveryErrorAndNamesTheSource) {
  Config c;
  c.source = "configs/x.toml";
  c.train.lr = -1;
  c.run.progress = "maybe";
  c.model.n_head = 0;  // the n_embd % n_head rule is skipped, not divided by zero
  Status s = validate_config(&c);
  EXPECT_CONTAINS(s.message(), "configs/x.toml: [train] lr: must be > 0 (got -1)");
  EXPECT_CONTAINS(s.message(), "configs/x.toml: [run] progress: must be one of auto, on, off");
  EXPECT_CONTAINS(s.message(), "configs/x.toml: [model] n_head: must be > 0 (got 0)");
  EXPECT_EQ(s.message().find("n_embd"), std::string::npos) << s.message();
}

// A value out of range that came from an override is the command line's, not the file's.
TEST(ConfigValidate, AnOverriddenValueNamesTheCommandLine) {
  const std::string msg =
      parse_error("[train]\nlr = -1\n", {"--checkpoint.keep_last=0", "train.seq_len=99999", "train.steps=5"});
  EXPECT_CONTAINS(msg, "configs/x.toml: [train] lr: must be > 0 (got -1)");
  EXPECT_CONTAINS(msg, "command line: [checkpoint] keep_last: must be >= 1 (got 0)");
  EXPECT_CONTAINS(msg, "command line: [train] seq_len: must be in [1, [model] context]");
  EXPECT_EQ(msg.find("configs/x.toml: [checkpoint]"), std::string::npos) << msg;
}

TEST(ConfigValidate, NullIsAnError) {
  EXPECT_FALSE(validate_config(nullptr).is_ok());
}

// ----------------------------------------------------------------------------------------------
// padded_vocab

int derived_padded_vocab(int vocab_size) {
  Config c;
  c.model.vocab_size = vocab_size;
  c.train.sample_tokens = 0;  // a sample starts from a newline, token 10, which tiny vocabularies lack
  Status s = validate_config(&c);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return c.model.padded_vocab;
}

TEST(ConfigPaddedVocab, Derived) {
  EXPECT_EQ(derived_padded_vocab(256), 256);
  EXPECT_EQ(derived_padded_vocab(50257), 50304);
  EXPECT_EQ(derived_padded_vocab(1), 128);
  EXPECT_EQ(derived_padded_vocab(128), 128);
  EXPECT_EQ(derived_padded_vocab(129), 256);
}

TEST(ConfigPaddedVocab, ExplicitValueIsKept) {
  Config c = parse_ok("[model]\nvocab_size = 50257\npadded_vocab = 50257\n");
  EXPECT_EQ(c.model.padded_vocab, 50257);
  c = parse_ok("[model]\npadded_vocab = 1024\n");
  EXPECT_EQ(c.model.padded_vocab, 1024);
}

TEST(ConfigLinks, AlgorithmNeedsTheLinksBackendAndFileNeedsAPath) {
  EXPECT_CONTAINS(parse_error("", {"comm.backend=mpi", "comm.algorithm=ring"}),
                  "[comm] algorithm: \"ring\" needs [comm] backend = \"links\"");
  EXPECT_CONTAINS(parse_error("", {"comm.backend=links", "links.topology=file"}),
                  "[links] file: must name the graph file");
  EXPECT_CONTAINS(parse_error("", {"links.mapping=diagonal"}), "[links] mapping");
  // Checked with the config (perigee-run, --print-config), not first when the links are set up.
  EXPECT_CONTAINS(parse_error("", {"links.outages=garbage"}),
                  "[links] outages: entry \"garbage\": not of the form a-b@start:end");
  EXPECT_CONTAINS(parse_error("", {"links.topology=walker_delta", "links.planes=4", "links.phasing=4"}),
                  "[links] phasing: Walker F must be < [links] planes = 4 (got 4)");
  parse_ok("", {"links.topology=walker_delta", "links.planes=4", "links.phasing=3", "links.outages=0-1@5:6"});
  Config c = parse_ok("", {"comm.backend=links", "comm.algorithm=torus2d", "links.topology=grid",
                           "links.planes=2", "links.sats_per_plane=4", "links.time_scale=0.01"});
  EXPECT_EQ(c.comm.algorithm, "torus2d");
  EXPECT_EQ(c.links.planes, 2);
  EXPECT_DOUBLE_EQ(c.links.time_scale, 0.01);
}

TEST(ConfigWarnings, WarmupThatOutlastsTheRun) {
  Config c = parse_ok("", {"train.steps=100", "train.warmup_steps=30"});
  EXPECT_TRUE(config_warnings(c).empty());
  c = parse_ok("", {"train.steps=100", "train.warmup_steps=0"});
  EXPECT_TRUE(config_warnings(c).empty());
  c = parse_ok("", {"train.steps=10", "train.warmup_steps=40", "train.lr=0.002"});
  std::vector<std::string> w = config_warnings(c);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_CONTAINS(w[0], "[train] warmup_steps = 40 >= [train] steps = 10");
  EXPECT_CONTAINS(w[0], "to 0.0005 at the last step");  // lr * 10 / 40, learning_rate()'s last value
  EXPECT_NEAR(learning_rate(c.train, 9), 0.0005, 1e-12);
  c = parse_ok("", {"train.steps=10", "train.warmup_steps=10"});  // peaks at the last step, no decay
  EXPECT_EQ(config_warnings(c).size(), 1u);
}

// ----------------------------------------------------------------------------------------------
// config_changes: what a resumed run does differently from the one that wrote the checkpoint.

TEST(ConfigChanges, NamesEachChangedKeyWithBothValuesInTheOrderAsked) {
  Config before;
  before.data.train_file = "a.bin";
  Config now = before;
  now.train.seed = 99;
  now.train.lr = 0.5;
  now.data.train_file = "b.bin";
  const std::string stored = config_to_json(before);
  const auto lines =
      config_changes(stored, now, {"data.train_file", "train.seed", "train.seq_len", "train.lr"});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "data.train_file: \"a.bin\" -> \"b.bin\"");
  EXPECT_EQ(lines[1], "train.seed: " + std::to_string(before.train.seed) + " -> 99");
  EXPECT_EQ(lines[2].rfind("train.lr: ", 0), 0u) << lines[2];
  EXPECT_TRUE(config_changes(stored, before, {"train.seed", "train.lr"}).empty());
  // An older checkpoint's text without the key, a text that is not JSON, a key without a section.
  EXPECT_TRUE(config_changes("{\"train\": {}}", now, {"train.seed"}).empty());
  bool readable = true;
  EXPECT_TRUE(config_changes("not json", now, {"train.seed"}, &readable).empty());
  EXPECT_FALSE(readable);
  EXPECT_TRUE(config_changes(stored, now, {"train.seed"}, &readable).size() == 1 && readable);
  EXPECT_TRUE(config_changes(stored, now, {"seed"}).empty());
}

}  // namespace
}  // namespace perigee::runtime
