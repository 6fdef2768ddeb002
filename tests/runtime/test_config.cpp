// Tests of the config system: TOML parsing and its error messages, command-line overrides,
// validation rules, the derived padded_vocab, JSON output, configs/default.toml and docs/config.md.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/config.hpp"

namespace perigee::runtime {
namespace {

const std::string kSourceDir = PERIGEE_SOURCE_DIR;

// Parses text as "configs/x.toml"; expects failure and returns the message.
std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {},
                        StatusCode code = StatusCode::kInvalidArgument) {
  Config config;
  Status s = parse_config(text, "configs/x.toml", overrides, &config);
  EXPECT_FALSE(s.is_ok()) << "expected an error for:\n" << text;
  EXPECT_EQ(s.code(), code) << s.to_string();
  return s.message();
}

Config parse_ok(const std::string& text, const std::vector<std::string>& overrides = {}) {
  Config config;
  Status s = parse_config(text, "configs/x.toml", overrides, &config);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return config;
}

Config validated_defaults() {
  Config config;
  Status s = validate_config(&config);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return config;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.is_open()) << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "missing: " << (needle) << "\nin: " << (haystack)

// ----------------------------------------------------------------------------------------------
// Defaults, default.toml, schema

TEST(ConfigDefaults, Validate) {
  Config config;
  EXPECT_EQ(config.model.padded_vocab, 0);
  ASSERT_TRUE(validate_config(&config).is_ok());
  EXPECT_EQ(config.model.padded_vocab, 256);
  // Validating again keeps the derived value and stays valid.
  ASSERT_TRUE(validate_config(&config).is_ok());
  EXPECT_EQ(config.model.padded_vocab, 256);
}

TEST(ConfigDefaults, EmptyDocumentIsDefaults) {
  Config config = parse_ok("");
  Config expected = validated_defaults();
  expected.source = "configs/x.toml";
  EXPECT_EQ(config, expected);
}

TEST(ConfigDefaults, DefaultTomlParsesToDefaults) {
  const std::string path = kSourceDir + "/configs/default.toml";
  Config config;
  Status s = load_config(path, {}, &config);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  Config expected = validated_defaults();
  expected.source = path;
  EXPECT_EQ(config, expected);
  EXPECT_EQ(config.source, path);
}

// Every schema key is written out (explicitly) in default.toml under its own section.
TEST(ConfigDefaults, DefaultTomlListsEveryKey) {
  const std::string text = read_text(kSourceDir + "/configs/default.toml");
  std::istringstream lines(text);
  std::string line, section;
  std::vector<std::string> found;
  while (std::getline(lines, line)) {
    if (line.starts_with("[")) {
      section = line.substr(1, line.find(']') - 1);
    } else if (!line.empty() && line[0] != '#' && line.find('=') != std::string::npos) {
      std::string key = line.substr(0, line.find('='));
      key.erase(key.find_last_not_of(' ') + 1);
      found.push_back(section + "." + key);
    }
  }
  const std::vector<ConfigKeyInfo> schema = config_schema();
  ASSERT_EQ(found.size(), schema.size());
  for (size_t i = 0; i < schema.size(); ++i) EXPECT_EQ(found[i], schema[i].section + "." + schema[i].key);
}

TEST(ConfigSchema, ListsEveryKey) {
  const std::vector<ConfigKeyInfo> schema = config_schema();
  ASSERT_EQ(schema.size(), 73u);  // 6 model + 18 train + 2 data + 3 device + 5 comm + 17 links + 6 checkpoint + 7 fault + 6 orbit + 3 run
  EXPECT_EQ(schema.front().section, "model");
  EXPECT_EQ(schema.front().key, "n_layer");
  EXPECT_EQ(schema.back().section, "run");
  EXPECT_EQ(schema.back().key, "progress");
  for (const ConfigKeyInfo& k : schema) {
    EXPECT_FALSE(k.doc.empty()) << k.key;
    EXPECT_FALSE(k.type.empty()) << k.key;
  }
  const auto find = [&](const std::string& section, const std::string& key) {
    for (const ConfigKeyInfo& k : schema) {
      if (k.section == section && k.key == key) return k;
    }
    ADD_FAILURE() << section << "." << key;
    return ConfigKeyInfo{};
  };
  EXPECT_EQ(find("train", "lr").type, "float");
  EXPECT_EQ(find("train", "lr").default_value, "0.001");
  EXPECT_EQ(find("train", "lr").allowed, "> 0");
  EXPECT_EQ(find("train", "steps").type, "int64");
  EXPECT_EQ(find("train", "seed").type, "uint64");
  EXPECT_EQ(find("model", "n_layer").type, "int");
  EXPECT_EQ(find("train", "beta1").allowed, "in [0, 1)");
  EXPECT_EQ(find("train", "grad_clip").default_value, "1.0");
  EXPECT_EQ(find("device", "device").default_value, "\"auto\"");
  EXPECT_EQ(find("device", "device").allowed, "one of cpu, cuda, auto");
}

// The schema's default texts, written as TOML, read back as the defaults.
TEST(ConfigSchema, DefaultTextsParseBack) {
  std::string text, section;
  for (const ConfigKeyInfo& k : config_schema()) {
    if (k.section != section) {
      section = k.section;
      text += "[" + section + "]\n";
    }
    text += k.key + " = " + k.default_value + "\n";
  }
  Config config = parse_ok(text);
  Config expected = validated_defaults();
  expected.source = "configs/x.toml";
  EXPECT_EQ(config, expected);
}

TEST(ConfigDocs, DocumentsEveryKeyInItsSection) {
  const std::string docs = read_text(kSourceDir + "/docs/config.md");
  for (const ConfigKeyInfo& k : config_schema()) {
    const size_t start = docs.find("## [" + k.section + "]");
    ASSERT_NE(start, std::string::npos) << "no heading for [" << k.section << "]";
    size_t end = docs.find("\n## ", start + 1);
    if (end == std::string::npos) end = docs.size();
    const std::string body = docs.substr(start, end - start);
    EXPECT_CONTAINS(body, "| `" + k.key + "` |");
    EXPECT_CONTAINS(body, "`" + k.default_value + "`");
  }
}

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
                  "configs/x.toml:2: unknown key [comm] zzzzzzzz (keys of [comm]: backend, timeout_s, algorithm, bucket_mb, grad_dtype)");
  // A sub-table of a section is an unknown key too.
  EXPECT_CONTAINS(parse_error("[train.extra]\nx = 1\n"), "unknown key [train] extra");
}

TEST(ConfigParse, UnknownSection) {
  const std::string message = parse_error("[trian]\nlr = 0.1\n");
  EXPECT_CONTAINS(message, "configs/x.toml");
  EXPECT_CONTAINS(message, "unknown section [trian] (did you mean [train]?)");
  EXPECT_CONTAINS(
      parse_error("[optimizer]\nlr = 0.1\n"),
      "unknown section [optimizer] (sections: [model], [train], [data], [device], [comm], [links], [checkpoint], [fault], [orbit], [run])");
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

TEST(ConfigLoad, EmptyPathMeansDefaultsAndOverrides) {
  Config config;
  Status s = load_config("", {"model.n_layer=2"}, &config);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  Config expected = validated_defaults();
  expected.model.n_layer = 2;
  EXPECT_EQ(config, expected);
  EXPECT_EQ(config.source, "");
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
  };
  for (const Case& c : cases) {
    const std::string message = parse_error("", {c.override_text});
    EXPECT_CONTAINS(message, c.expected);
  }
}

TEST(ConfigOverride, UnknownKeys) {
  EXPECT_CONTAINS(parse_error("", {"--train.lrr=1"}),
                  "command line: unknown key train.lrr (did you mean train.lr?)");
  EXPECT_CONTAINS(parse_error("", {"trian.lr=1"}),
                  "command line: unknown key trian.lr (did you mean train.lr?)");
  EXPECT_CONTAINS(parse_error("", {"train.n_layer=2"}),
                  "unknown key train.n_layer (did you mean model.n_layer?)");
  EXPECT_CONTAINS(parse_error("", {"lr=1"}), "command line: unknown key lr (did you mean train.lr?)");
  EXPECT_CONTAINS(parse_error("", {"comm.zzzzzzz=1"}), "unknown key comm.zzzzzzz (keys of [comm]: backend, timeout_s, algorithm, bucket_mb, grad_dtype)");
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
  EXPECT_CONTAINS(parse_error("", {"train.lr=-1"}), "configs/x.toml: [train] lr: must be > 0 (got -1)");
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
      {"n_layer", [](Config& c) { c.model.n_layer = 0; }, "[model] n_layer", "must be > 0 (got 0)"},
      {"n_head", [](Config& c) { c.model.n_head = -1; }, "[model] n_head", "must be > 0 (got -1)"},
      {"n_embd", [](Config& c) { c.model.n_embd = 0; }, "[model] n_embd", "must be > 0"},
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
      {"threads", [](Config& c) { c.device.threads = -1; }, "[device] threads", "must be >= 0 (got -1)"},
      {"backend", [](Config& c) { c.comm.backend = "gloo"; }, "[comm] backend",
       "must be one of mpi, nccl, links, auto (got \"gloo\")"},
      {"bucket_mb", [](Config& c) { c.comm.bucket_mb = -1; }, "[comm] bucket_mb", "must be >= 0 (got -1)"},
      {"grad_dtype", [](Config& c) { c.comm.grad_dtype = "fp16"; }, "[comm] grad_dtype",
       "must be one of fp32, bf16 (got \"fp16\")"},
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
  Status s = validate_config(&c);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  c.train.min_lr_ratio = 1;
  c.train.seq_len = c.model.context;
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

TEST(ConfigValidate, NullIsAnError) {
  EXPECT_FALSE(validate_config(nullptr).is_ok());
}

// ----------------------------------------------------------------------------------------------
// padded_vocab

int derived_padded_vocab(int vocab_size) {
  Config c;
  c.model.vocab_size = vocab_size;
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

// ----------------------------------------------------------------------------------------------
// JSON

TEST(ConfigJson, EveryKeyWithItsValue) {
  Config c =
      parse_ok("[model]\nvocab_size = 50257\n[train]\nlr = 3e-4\nseed = 42\n[run]\nname = \"q\\\"uote\"\n",
               {"train.steps=5000000000", "device.device=cpu", "train.sample_prompt=Hi\n\tthere"});
  const std::string text = config_to_json(c);
  EXPECT_CONTAINS(text, "{\n  \"source\": \"configs/x.toml\",\n  \"model\": {\n    \"n_layer\": 4,");
  const nlohmann::json j = nlohmann::json::parse(text);
  ASSERT_EQ(j.size(), 11u);  // source + 10 sections
  EXPECT_EQ(j["source"], "configs/x.toml");
  EXPECT_EQ(j["model"].size(), 6u);
  EXPECT_EQ(j["train"].size(), 18u);
  EXPECT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["device"].size(), 3u);
  EXPECT_EQ(j["comm"].size(), 5u);
  EXPECT_EQ(j["links"].size(), 17u);
  EXPECT_EQ(j["checkpoint"].size(), 6u);
  EXPECT_EQ(j["fault"].size(), 7u);
  EXPECT_EQ(j["orbit"].size(), 6u);
  EXPECT_EQ(j["run"].size(), 3u);
  EXPECT_EQ(j["checkpoint"]["async"], true);  // bool keys are JSON booleans
  EXPECT_EQ(j["checkpoint"]["every_seconds"].get<double>(), 0.0);

  EXPECT_EQ(j["model"]["n_layer"], c.model.n_layer);
  EXPECT_EQ(j["model"]["n_head"], c.model.n_head);
  EXPECT_EQ(j["model"]["n_embd"], c.model.n_embd);
  EXPECT_EQ(j["model"]["context"], c.model.context);
  EXPECT_EQ(j["model"]["vocab_size"], 50257);
  EXPECT_EQ(j["model"]["padded_vocab"], 50304);  // derived
  const auto& t = c.train;
  EXPECT_EQ(j["train"]["batch_size"], t.batch_size);
  EXPECT_EQ(j["train"]["seq_len"], t.seq_len);
  EXPECT_EQ(j["train"]["steps"].get<int64_t>(), int64_t{5000000000});
  EXPECT_EQ(j["train"]["lr"].get<double>(), 3e-4);
  EXPECT_EQ(j["train"]["min_lr_ratio"].get<double>(), t.min_lr_ratio);
  EXPECT_EQ(j["train"]["warmup_steps"].get<int64_t>(), t.warmup_steps);
  EXPECT_EQ(j["train"]["weight_decay"].get<double>(), t.weight_decay);
  EXPECT_EQ(j["train"]["beta1"].get<double>(), t.beta1);
  EXPECT_EQ(j["train"]["beta2"].get<double>(), t.beta2);
  EXPECT_EQ(j["train"]["eps"].get<double>(), t.eps);
  EXPECT_EQ(j["train"]["grad_clip"].get<double>(), t.grad_clip);
  EXPECT_EQ(j["train"]["seed"].get<uint64_t>(), 42u);
  EXPECT_EQ(j["train"]["val_every"].get<int64_t>(), t.val_every);
  EXPECT_EQ(j["train"]["val_batches"], t.val_batches);
  EXPECT_EQ(j["train"]["log_every"].get<int64_t>(), t.log_every);
  EXPECT_EQ(j["train"]["sample_tokens"], t.sample_tokens);
  EXPECT_EQ(j["train"]["sample_temperature"].get<double>(), t.sample_temperature);
  EXPECT_EQ(j["train"]["sample_prompt"], "Hi\n\tthere");
  EXPECT_EQ(j["data"]["train_file"], c.data.train_file);
  EXPECT_EQ(j["data"]["val_file"], c.data.val_file);
  EXPECT_EQ(j["device"]["device"], "cpu");
  EXPECT_EQ(j["device"]["threads"], c.device.threads);
  EXPECT_EQ(j["comm"]["backend"], c.comm.backend);
  EXPECT_EQ(j["run"]["dir"], c.run.dir);
  EXPECT_EQ(j["run"]["name"], "q\"uote");
  EXPECT_EQ(j["run"]["progress"], c.run.progress);
}

// JSON -> overrides -> config gives back the same config, for the defaults and a changed one.
TEST(ConfigJson, RoundTripsThroughOverrides) {
  Config changed =
      parse_ok("", {"train.lr=0.000123456789", "train.seed=18446744073709551615", "model.n_layer=7",
                    "run.name=x y", "train.eps=1e-12", "model.padded_vocab=384"});
  for (const Config& original : {validated_defaults(), changed}) {
    const nlohmann::json j = nlohmann::json::parse(config_to_json(original));
    std::vector<std::string> overrides;
    for (const auto& [section, keys] : j.items()) {
      if (section == "source") continue;
      for (const auto& [key, value] : keys.items()) {
        overrides.push_back(section + "." + key + "=" +
                            (value.is_string() ? value.get<std::string>() : value.dump()));
      }
    }
    EXPECT_EQ(overrides.size(), 73u);
    Config back;
    Status s = load_config("", overrides, &back);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    back.source = original.source;
    EXPECT_EQ(back, original) << config_to_json(back) << "\nvs\n" << config_to_json(original);
  }
}

}  // namespace
}  // namespace perigee::runtime

namespace perigee::runtime {
namespace {

TEST(ConfigBool, FileAndOverrideValuesAndErrors) {
  EXPECT_FALSE(parse_ok("[checkpoint]\nasync = false\n").checkpoint.async);
  EXPECT_TRUE(parse_ok("[checkpoint]\nasync = false\n", {"checkpoint.async=true"}).checkpoint.async);
  EXPECT_FALSE(parse_ok("", {"--checkpoint.async=false"}).checkpoint.async);
  EXPECT_CONTAINS(parse_error("[checkpoint]\nasync = 1\n"), "configs/x.toml:2: [checkpoint] async");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.async=maybe"}), "checkpoint.async=maybe");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.resume=always"}), "[checkpoint] resume");
  EXPECT_CONTAINS(parse_error("", {"checkpoint.keep_last=0"}), "[checkpoint] keep_last");
}


TEST(ConfigLinks, AlgorithmNeedsTheLinksBackendAndFileNeedsAPath) {
  EXPECT_CONTAINS(parse_error("", {"comm.backend=mpi", "comm.algorithm=ring"}),
                  "[comm] algorithm: \"ring\" needs [comm] backend = \"links\"");
  EXPECT_CONTAINS(parse_error("", {"comm.backend=links", "links.topology=file"}),
                  "[links] file: must name the graph file");
  EXPECT_CONTAINS(parse_error("", {"links.mapping=diagonal"}), "[links] mapping");
  Config c = parse_ok("", {"comm.backend=links", "comm.algorithm=torus2d", "links.topology=grid",
                           "links.planes=2", "links.sats_per_plane=4", "links.time_scale=0.01"});
  EXPECT_EQ(c.comm.algorithm, "torus2d");
  EXPECT_EQ(c.links.planes, 2);
  EXPECT_DOUBLE_EQ(c.links.time_scale, 0.01);
}

}  // namespace
}  // namespace perigee::runtime
