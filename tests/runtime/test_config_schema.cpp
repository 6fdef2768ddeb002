// Tests of the config schema and its outputs: the defaults, configs/default.toml, the key listing
// (config_schema), docs/config.md and the JSON output.
#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/config.hpp"
#include "tests/runtime/config_test_util.hpp"

namespace perigee::runtime {
namespace {

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
  ASSERT_EQ(schema.size(), 83u);  // 6 model + 20 train + 2 data + 8 device + 5 comm + 17 links + 8 checkpoint
                                  // + 7 fault + 7 orbit + 3 run
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
  EXPECT_EQ(j["train"].size(), 20u);
  EXPECT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["device"].size(), 8u);
  EXPECT_EQ(j["comm"].size(), 5u);
  EXPECT_EQ(j["links"].size(), 17u);
  EXPECT_EQ(j["checkpoint"].size(), 8u);
  EXPECT_EQ(j["fault"].size(), 7u);
  EXPECT_EQ(j["orbit"].size(), 7u);
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
    EXPECT_EQ(overrides.size(), 83u);
    Config back;
    Status s = parse_config("", "", overrides, &back);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    back.source = original.source;
    EXPECT_EQ(back, original) << config_to_json(back) << "\nvs\n" << config_to_json(original);
  }
}

}  // namespace
}  // namespace perigee::runtime
