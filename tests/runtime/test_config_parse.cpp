// Tests of reading a config: TOML values and type errors, unknown keys and sections with their
// suggestions, syntax errors, config files, and command-line overrides.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "runtime/config.hpp"
#include "runtime/trainer_checkpoint.hpp"
#include "tests/runtime/config_test_util.hpp"

namespace perigee::runtime {
namespace {

// ----------------------------------------------------------------------------------------------
// TOML values and type errors

TEST(ConfigParse, ReadsEveryType) {
  Config c = parse_ok(R"(
[model]
n_layer = 6
[train]
steps = 5000000000
lr = 3e-4
weight_decay = 0        # integer accepted for a float key
seed = 9223372036854775807
sample_prompt = "Once upon"
[device]
device = "cpu"
)");
  EXPECT_EQ(c.model.n_layer, 6);
  EXPECT_EQ(c.train.steps, int64_t{5000000000});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.weight_decay, 0.0);
  EXPECT_EQ(c.train.seed, uint64_t{9223372036854775807ull});
  EXPECT_EQ(c.train.sample_prompt, "Once upon");
  EXPECT_EQ(c.device.device, "cpu");
  EXPECT_EQ(c.model.n_head, 4);  // untouched keys keep defaults
}

TEST(ConfigParse, DottedKeysAndInlineTables) {
  Config c = parse_ok("train.lr = 0.5\nmodel = { n_layer = 2 }\n");
  EXPECT_EQ(c.train.lr, 0.5);
  EXPECT_EQ(c.model.n_layer, 2);
}

TEST(ConfigParse, StringForFloat) {
  const std::string text =
      "# comment\n\n[model]\nn_layer = 4\n\n\n\n\n\n\n[train]\nlr = \"fast\"\n";  // lr is on line 12
  const std::string message = parse_error(text);
  EXPECT_EQ(message.substr(0, message.find('\n')),
            "configs/x.toml:12: [train] lr: expected a number, got string \"fast\"");
}

TEST(ConfigParse, TypeErrors) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"[train]\nsteps = \"many\"",
       "configs/x.toml:2: [train] steps: expected an integer, got string \"many\""},
      {"[model]\nn_layer = 4.0", "configs/x.toml:2: [model] n_layer: expected an integer, got float 4.0"},
      {"[model]\nn_layer = 2.5", "[model] n_layer: expected an integer, got float 2.5"},
      {"[model]\nn_layer = true", "[model] n_layer: expected an integer, got boolean true"},
      {"[train]\nlr = false", "[train] lr: expected a number, got boolean false"},
      {"[train]\nlr = [1, 2]", "[train] lr: expected a number, got an array"},
      {"[train]\nlr = inf", "[train] lr: expected a finite number, got float inf"},
      {"[train]\nlr = nan", "[train] lr: expected a finite number, got float nan"},
      {"[device]\ndevice = 1", "[device] device: expected a string, got integer 1"},
      {"[run]\nname = 1979-05-27", "[run] name: expected a string, got a date"},
      {"[data]\ntrain_file = { path = \"a\" }", "[data] train_file: expected a string, got a table"},
      {"[model]\nn_layer = 3000000000",
       "[model] n_layer: integer 3000000000 is out of range for a 32-bit integer [-2147483648, 2147483647]"},
      {"[model]\nn_embd = -2147483649",
       "[model] n_embd: integer -2147483649 is out of range for a 32-bit integer"},
      {"[train]\nseed = -1", "[train] seed: expected a non-negative integer, got integer -1"},
      {"train = 5", "configs/x.toml:1: [train] must be a section (a table), got integer 5"},
  };
  for (const Case& c : cases) EXPECT_CONTAINS(parse_error(c.text), c.expected);
}

TEST(ConfigParse, ReportsEveryErrorInLineOrder) {
  const std::string message = parse_error("[train]\nlr = \"x\"\nsteps = 1.5\n[model]\nn_layr = 2\n");
  const size_t a = message.find("configs/x.toml:2: [train] lr");
  const size_t b = message.find("configs/x.toml:3: [train] steps");
  const size_t c = message.find("configs/x.toml:5: unknown key [model] n_layr");
  ASSERT_NE(a, std::string::npos) << message;
  ASSERT_NE(b, std::string::npos) << message;
  ASSERT_NE(c, std::string::npos) << message;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

TEST(ConfigParse, ErrorLeavesOutputUntouched) {
  Config config;
  config.train.lr = 42;
  Status s = parse_config("[train]\nlr = \"x\"", "x.toml", {}, &config);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(config.train.lr, 42);
}

// ----------------------------------------------------------------------------------------------
// Unknown keys and sections, syntax errors, files

TEST(ConfigParse, UnknownKeySuggestsClosest) {
  const std::string message = parse_error("[train]\nsteps = 10\nlrr = 0.1\n");
  EXPECT_CONTAINS(message, "configs/x.toml:3: unknown key [train] lrr (did you mean lr?)");
}

TEST(ConfigParse, UnknownKeySuggestsOtherSection) {
  EXPECT_CONTAINS(parse_error("[train]\nn_layer = 2\n"),
                  "configs/x.toml:2: unknown key [train] n_layer (did you mean [model] n_layer?)");
  EXPECT_CONTAINS(parse_error("[model]\nwarmup = 2\n"), "(did you mean [train] warmup_steps?)");
}

TEST(ConfigParse, UnknownKeyWithoutSuggestionListsKeys) {
  EXPECT_CONTAINS(parse_error("[comm]\nzzzzzzzz = 1\n"),
                  "configs/x.toml:2: unknown key [comm] zzzzzzzz (keys of [comm]: backend, timeout_s, "
                  "algorithm, bucket_mb, grad_dtype)");
  // A sub-table of a section is an unknown key too.
  EXPECT_CONTAINS(parse_error("[train.extra]\nx = 1\n"), "unknown key [train] extra");
}

TEST(ConfigParse, UnknownSection) {
  const std::string message = parse_error("[trian]\nlr = 0.1\n");
  EXPECT_CONTAINS(message, "configs/x.toml");
  EXPECT_CONTAINS(message, "unknown section [trian] (did you mean [train]?)");
  EXPECT_CONTAINS(parse_error("[optimizer]\nlr = 0.1\n"),
                  "unknown section [optimizer] (sections: [model], [train], [data], [device], [comm], "
                  "[links], [checkpoint], [fault], [orbit], [run])");
}

TEST(ConfigParse, KeyOutsideSection) {
  EXPECT_CONTAINS(parse_error("lr = 0.1\n"),
                  "configs/x.toml:1: key lr is outside any section (did you mean [train] lr?)");
}

TEST(ConfigParse, SyntaxErrorHasLineAndColumn) {
  const std::string message = parse_error("[train]\nsteps = 3\nlr = = 0.1\n");
  EXPECT_CONTAINS(message, "configs/x.toml:3:");
  EXPECT_CONTAINS(message, "TOML syntax error");
  EXPECT_CONTAINS(parse_error("[model]\nn_layer = 4\nn_layer = 5\n"), "configs/x.toml:3:");
  EXPECT_CONTAINS(parse_error("[run]\nname = \"unterminated\n"), "configs/x.toml:2:");
}

TEST(ConfigLoad, MissingFileIsNotFound) {
  const std::string path = kSourceDir + "/configs/does_not_exist.toml";
  Config config;
  Status s = load_config(path, {}, &config);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_CONTAINS(s.message(), path);
}

TEST(ConfigLoad, DirectoryIsAnError) {
  Config config;
  Status s = load_config(kSourceDir + "/configs", {}, &config);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(s.message(), "/configs");
}

TEST(ConfigLoad, ReadsFileWithOverridesAndNamesIt) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "perigee_test_config";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.toml").string();
  {
    std::ofstream out(path);
    out << "[train]\nlr = 0.01\nsteps = 7\n[run]\nname = \"demo\"\n";
  }
  Config config;
  Status s = load_config(path, {"--train.lr=0.02"}, &config);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(config.source, path);
  EXPECT_EQ(config.train.lr, 0.02);
  EXPECT_EQ(config.train.steps, 7);
  EXPECT_EQ(config.run.name, "demo");

  {
    std::ofstream out(path);
    out << "[train]\n\nlrr = 0.01\n";
  }
  s = load_config(path, {}, &config);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(s.message(), path + ":3: unknown key [train] lrr (did you mean lr?)");
  std::filesystem::remove_all(dir);
}

// Every .toml under configs/ (other configs included) loads and validates.
TEST(ConfigLoad, EveryRepoConfigLoads) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir + "/configs")) {
    if (entry.path().extension() != ".toml") continue;
    Config config;
    Status s = load_config(entry.path().string(), {}, &config);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    ++count;
  }
  EXPECT_GE(count, 1);
}

// A resume does not validate again at a step whose validation the run that wrote the checkpoint
// recorded: a multiple of its val_every short of its end, or its last step.
TEST(ConfigJson, ValidationRecordedAtTheStepsThatRunValidated) {
  const std::string j = config_to_json(parse_ok("", {"train.steps=10", "train.val_every=4"}));
  EXPECT_FALSE(validation_recorded_at(j, 0));
  EXPECT_FALSE(validation_recorded_at(j, 3));
  EXPECT_TRUE(validation_recorded_at(j, 4));
  EXPECT_TRUE(validation_recorded_at(j, 8));
  EXPECT_TRUE(validation_recorded_at(j, 10));   // the final validation
  EXPECT_FALSE(validation_recorded_at(j, 12));  // past its end: never reached
  const std::string off = config_to_json(parse_ok("", {"train.steps=10", "train.val_every=0"}));
  EXPECT_FALSE(validation_recorded_at(off, 10));
  EXPECT_FALSE(validation_recorded_at("not json", 4));
  EXPECT_FALSE(validation_recorded_at("{\"train\": {\"steps\": 10}}", 4));  // an older writer's keys
}

// An empty path (an unset shell variable) is refused, not read as "the defaults"; empty text is.
TEST(ConfigLoad, EmptyPathIsRefusedAndEmptyTextMeansDefaultsAndOverrides) {
  Config config;
  Status s = load_config("", {"model.n_layer=2"}, &config);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(s.message(), "the config file path is empty");
  s = parse_config("", "", {"model.n_layer=2"}, &config);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  Config expected = validated_defaults();
  expected.model.n_layer = 2;
  EXPECT_EQ(config, expected);
  EXPECT_EQ(config.source, "");
}

// A path that is not UTF-8 is still a path: the config's JSON (--print-config, the run log, the
// ranks' agreement) writes its bytes as U+FFFD instead of throwing.
TEST(ConfigJson, ASourcePathThatIsNotUtf8IsReplacedNotThrown) {
  Config config = validated_defaults();
  config.source = "configs/bad\xff.toml";
  std::string json;
  EXPECT_NO_THROW(json = config_to_json(config));
  EXPECT_CONTAINS(json, "configs/bad\xef\xbf\xbd.toml");
}

TEST(ConfigParse, EmptySourceNameStillNamesSomething) {
  Config config;
  Status s = parse_config("[train]\nlr = \"x\"", "", {}, &config);
  EXPECT_CONTAINS(s.message(), "<config>:2: [train] lr");
}

// ----------------------------------------------------------------------------------------------
// Overrides

TEST(ConfigOverride, EveryType) {
  Config c = parse_ok("", {"--model.n_layer=6", "train.steps=5000000000", "--train.seed=18446744073709551615",
                           "train.lr=3e-4", "--train.weight_decay=0", "train.beta2=+0.99",
                           "--run.name=my run", "data.train_file=a=b.bin", "--train.sample_prompt="});
  EXPECT_EQ(c.model.n_layer, 6);
  EXPECT_EQ(c.train.steps, int64_t{5000000000});
  EXPECT_EQ(c.train.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(c.train.beta2, 0.99);
  EXPECT_EQ(c.run.name, "my run");
  EXPECT_EQ(c.data.train_file, "a=b.bin");
  EXPECT_EQ(c.train.sample_prompt, "");
}

TEST(ConfigOverride, TypeErrors) {
  struct Case {
    std::string override_text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--train.lr=fast", "command line: train.lr=fast: expected a number, got \"fast\""},
      {"train.lr=", "command line: train.lr=: expected a number, got \"\""},
      {"train.lr=inf", "train.lr=inf: expected a finite number"},
      {"train.lr=nan", "train.lr=nan: expected a finite number"},
      {"train.lr=true", "expected a number, got \"true\""},
      {"model.n_layer=2.5", "command line: model.n_layer=2.5: expected an integer, got \"2.5\""},
      {"model.n_layer=1e3", "expected an integer, got \"1e3\""},
      {"model.n_layer=four", "expected an integer, got \"four\""},
      {"model.n_layer=3000000000",
       "model.n_layer=3000000000: \"3000000000\" is out of range for a 32-bit integer"},
      {"train.steps=99999999999999999999", "is out of range for a 64-bit integer"},
      {"train.seed=99999999999999999999", "is out of range for an unsigned 64-bit integer"},
      {"train.seed=-1", "train.seed=-1: expected a non-negative integer, got \"-1\""},
      {"--train.lr", "command line: override \"--train.lr\" has no value; expected section.key=value"},
      {"--foo", "command line: unknown option \"--foo\" (an override is --section.key=value; --help lists"},
      {"-x", "command line: unknown option \"-x\""},
  };
  for (const Case& c : cases) {
    const std::string message = parse_error("", {c.override_text});
    EXPECT_CONTAINS(message, c.expected);
  }
}

// Command-line values are raw bytes; the resolved config is written as JSON (config.json, every
// checkpoint), which must be UTF-8. A Latin-1 value is refused by name instead of crashing later.
TEST(ConfigOverride, StringsMustBeUtf8) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"caf\xE9", "byte 0xE9 at offset 3"},           // Latin-1
      {"ab\xC3", "byte 0xC3 at offset 2"},            // truncated sequence
      {"\xC0\xAF", "byte 0xC0 at offset 0"},          // overlong
      {"x\xED\xA0\x80", "byte 0xED at offset 1"},     // a UTF-16 surrogate
      {"\xF4\x90\x80\x80", "byte 0xF4 at offset 0"},  // above U+10FFFF
      {"\xFF", "byte 0xFF at offset 0"},
  };
  for (const auto& [value, where] : bad) {
    const std::string message = parse_error("", {"train.sample_prompt=" + value});
    EXPECT_CONTAINS(message, "command line: train.sample_prompt=");
    EXPECT_CONTAINS(message, "not valid UTF-8 (" + where + ")");
  }
  Config c;
  const std::string good = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80 \xED\x9F\xBF";  // é € 🚀 U+D7FF
  ASSERT_TRUE(
      parse_config("", "", {"train.sample_prompt=" + good, "run.name=\xE5\x8D\xAB\xE6\x98\x9F"}, &c).is_ok());
  EXPECT_EQ(c.train.sample_prompt, good);
  EXPECT_NO_THROW((void)config_to_json(c));
}

TEST(ConfigOverride, UnknownKeys) {
  EXPECT_CONTAINS(parse_error("", {"--train.lrr=1"}),
                  "command line: unknown key train.lrr (did you mean train.lr?)");
  EXPECT_CONTAINS(parse_error("", {"trian.lr=1"}),
                  "command line: unknown key trian.lr (did you mean train.lr?)");
  EXPECT_CONTAINS(parse_error("", {"train.n_layer=2"}),
                  "unknown key train.n_layer (did you mean model.n_layer?)");
  EXPECT_CONTAINS(parse_error("", {"lr=1"}), "command line: unknown key lr (did you mean train.lr?)");
  EXPECT_CONTAINS(
      parse_error("", {"comm.zzzzzzz=1"}),
      "unknown key comm.zzzzzzz (keys of [comm]: backend, timeout_s, algorithm, bucket_mb, grad_dtype)");
  EXPECT_CONTAINS(parse_error("", {"qqqq.zzzzzzz=1"}), "unknown key qqqq.zzzzzzz (sections: model, train");
}

TEST(ConfigOverride, ReportsEveryBadOverride) {
  const std::string message = parse_error("", {"train.lr=x", "model.n_layer=y"});
  EXPECT_CONTAINS(message, "train.lr=x");
  EXPECT_CONTAINS(message, "model.n_layer=y");
}

TEST(ConfigOverride, TakePrecedenceOverFileInOrder) {
  const std::string file = "[train]\nlr = 0.01\nsteps = 7\n";
  Config c = parse_ok(file, {"train.lr=0.02"});
  EXPECT_EQ(c.train.lr, 0.02);
  EXPECT_EQ(c.train.steps, 7);
  c = parse_ok(file, {"train.lr=1e-4", "--train.lr=2e-4"});
  EXPECT_EQ(c.train.lr, 2e-4);
  // A file error is reported before (and without) the overrides.
  const std::string message = parse_error("[train]\nlr = \"x\"\n", {"train.lr=0.1"});
  EXPECT_CONTAINS(message, "configs/x.toml:2: [train] lr");
}

TEST(ConfigOverride, ResultIsValidated) {
  EXPECT_CONTAINS(parse_error("", {"train.lr=-1"}), "command line: [train] lr: must be > 0 (got -1)");
  EXPECT_CONTAINS(parse_error("", {"comm.timeout_s=1e-300"}),
                  "command line: [comm] timeout_s: must be >= 1 (got 1e-300)");
  // A cross-field rule broken by an override of the other key names the file with the command line.
  EXPECT_CONTAINS(
      parse_error("[model]\nn_embd = 128\nn_head = 4\n", {"model.n_head=5"}),
      "configs/x.toml with the command line: [model] n_embd: must be a multiple of [model] n_head "
      "= 5 (got 128)");
  EXPECT_CONTAINS(parse_error("[model]\nn_embd = 128\nn_head = 5\n"),
                  "configs/x.toml: [model] n_embd: must be a multiple of [model] n_head = 5");
  EXPECT_CONTAINS(parse_error("[model]\nn_embd = 128\n", {"model.n_head=5", "model.n_embd=129"}),
                  "command line: [model] n_embd: must be a multiple");
  // An override can also repair a file value that alone would be invalid.
  Config c = parse_ok("[train]\nseq_len = 512\n", {"model.context=512"});
  EXPECT_EQ(c.train.seq_len, 512);
}

TEST(ConfigOverride, ApplyOverridesDirectly) {
  Config c;
  ASSERT_TRUE(apply_overrides({"device.device=cpu", "device.threads=3"}, &c).is_ok());
  EXPECT_EQ(c.device.device, "cpu");
  EXPECT_EQ(c.device.threads, 3);
  EXPECT_FALSE(apply_overrides({"device.threads=x"}, &c).is_ok());
}

TEST(ConfigBool, FileAndOverrideValuesAndErrors) {
  EXPECT_FALSE(parse_ok("[checkpoint]\nasync = false\n").checkpoint.async);
  EXPECT_TRUE(parse_ok("[checkpoint]\nasync = false\n", {"checkpoint.async=true"}).checkpoint.async);
  EXPECT_FALSE(parse_ok("", {"--checkpoint.async=false"}).checkpoint.async);
  EXPECT_CONTAINS(parse_error("[checkpoint]\nasync = 1\n"), "configs/x.toml:2: [checkpoint] async");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.async=maybe"}), "checkpoint.async=maybe");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.resume=always"}), "[checkpoint] resume");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.keep_last=0"}), "[checkpoint] keep_last");
}

// [checkpoint] verify: "auto" reads each new file back only when keep_last = 1 (retention then removes
// the only other copy right after the new one is published).
TEST(CheckpointVerify, AutoVerifiesWhenTheNewFileIsTheOnlyCopy) {
  struct Case {
    std::vector<std::string> overrides;
    int keep_last;
    bool verify;
  };
  const Case cases[] = {
      {{}, 3, false},
      {{"checkpoint.keep_last=1"}, 1, true},
      {{"checkpoint.keep_last=1", "checkpoint.verify=never"}, 1, false},
      {{"checkpoint.verify=always"}, 3, true},
  };
  for (const Case& c : cases) {
    const checkpoint::StoreOptions o = store_options(parse_ok("", c.overrides).checkpoint);
    EXPECT_EQ(o.keep_last, c.keep_last);
    EXPECT_EQ(o.verify_after_commit, c.verify) << (c.overrides.empty() ? "defaults" : c.overrides.back());
  }
  EXPECT_CONTAINS(parse_error("", {"checkpoint.verify=sometimes"}), "[checkpoint] verify");
}

}  // namespace
}  // namespace perigee::runtime
