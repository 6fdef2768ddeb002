// The job description the ranks compare before training (rank_agreement.hpp): which config keys it
// holds and which node-local ones it leaves out, the token files' fingerprints, and the message that
// names differing keys with their ranks. check_ranks_agree itself runs under MPI in
// mpi_test_rank_agreement.cpp and in e2e.train.
#include "runtime/rank_agreement.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/token_file.hpp"
#include "tests/runtime/config_test_util.hpp"

namespace perigee::runtime {
namespace {

namespace fs = std::filesystem;

std::string crc_hex(const uint8_t* bytes, size_t n) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", crc32(bytes, n));
  return text;
}

class RankAgreement : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perigee_agree_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "a");
    fs::create_directories(dir_ / "b");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write_tokens(const std::string& name, std::vector<int32_t> tokens, uint32_t vocab = 256) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(write_token_file(path, tokens, vocab).is_ok());
    return path;
  }
  fs::path dir_;
};

TEST_F(RankAgreement, DescribesEveryKeyButTheNodeLocalOnes) {
  const Config config = validated_defaults();
  const JobDescription job = describe_job(config, "cpu");
  EXPECT_EQ(job.at("train.lr"), "0.001");
  EXPECT_EQ(job.at("model.n_layer"), "4");
  EXPECT_EQ(job.at("device.precision"), "\"fp32\"");
  EXPECT_EQ(job.at("job.backend"), "cpu");
  for (const auto key : kNodeLocalKeys) EXPECT_EQ(job.count(std::string(key)), 0u) << key;
  // Every other key of the config is there.
  EXPECT_EQ(job.count("comm.timeout_s"), 1u);
  EXPECT_EQ(job.count("orbit.margin_s"), 1u);
  EXPECT_EQ(job.at("job.checkpoint_dir"), "<run dir>/checkpoints");
  EXPECT_EQ(job.at("job.fault_plan"), "none");
  EXPECT_EQ(job.at("job.links_file"), "unused");
}

TEST_F(RankAgreement, InputFilesAreComparedByContentAndFoldersBySetting) {
  Config a = validated_defaults();
  a.fault.plan = (dir_ / "a" / "plan.txt").string();
  std::ofstream(a.fault.plan) << "death rank=1 step=5\n";
  Config b = a;
  b.fault.plan = (dir_ / "b" / "plan.txt").string();
  std::ofstream(b.fault.plan) << "death rank=1 step=5\n";
  a.checkpoint.dir = "/node0/ckpt";
  b.checkpoint.dir = "/mnt/ckpt";
  b.device.device = "cuda";  // a = "auto": what each chose is job.backend
  EXPECT_EQ(describe_job(a, "cpu"), describe_job(b, "cpu"));
  EXPECT_EQ(
      describe_job(a, "cpu").at("job.fault_plan"),
      str_cat("20 bytes, crc32 ", crc_hex(reinterpret_cast<const uint8_t*>("death rank=1 step=5\n"), 20)));
  std::ofstream(b.fault.plan) << "death rank=1 step=6\n";  // another plan: other collectives
  EXPECT_NE(describe_job(a, "cpu").at("job.fault_plan"), describe_job(b, "cpu").at("job.fault_plan"));
  b.checkpoint.dir = "";
  EXPECT_NE(describe_job(a, "cpu").at("job.checkpoint_dir"), describe_job(b, "cpu").at("job.checkpoint_dir"));
  b.fault.plan = (dir_ / "b" / "none.txt").string();
  EXPECT_EQ(describe_job(b, "cpu").at("job.fault_plan"), "missing: " + b.fault.plan);
  b.links.topology = "file";
  b.links.file = a.fault.plan;
  EXPECT_EQ(describe_job(b, "cpu").at("job.links_file"), describe_job(a, "cpu").at("job.fault_plan"));
}

TEST_F(RankAgreement, NodeLocalKeysAndTokenFilePathsDoNotMatterButTheirContentDoes) {
  Config a = validated_defaults();
  a.data.train_file = write_tokens("a/train.bin", {1, 2, 3, 4});
  a.data.val_file = write_tokens("a/val.bin", {5, 6});
  Config b = a;
  b.data.train_file = write_tokens("b/train.bin", {1, 2, 3, 4});  // same tokens, elsewhere
  b.data.val_file = write_tokens("b/val.bin", {5, 6});
  b.device.threads = 7;
  b.run.progress = "off";
  b.run.dir = "/elsewhere/runs";
  b.source = "/node7/perigee.toml";
  EXPECT_EQ(describe_job(a, "cpu"), describe_job(b, "cpu"));
  const uint8_t bytes[8] = {1, 0, 2, 0, 3, 0, 4, 0};  // the four tokens as stored
  EXPECT_EQ(describe_job(a, "cpu").at("job.train_data"),
            str_cat("4 tokens, vocabulary 256, crc32 ", crc_hex(bytes, 8)));

  b.data.val_file = write_tokens("b/val.bin", {5, 7});  // one token differs
  EXPECT_NE(describe_job(a, "cpu").at("job.val_data"), describe_job(b, "cpu").at("job.val_data"));
  b.data.val_file = write_tokens("b/val.bin", {5, 6}, 300);  // another vocabulary
  EXPECT_NE(describe_job(a, "cpu").at("job.val_data"), describe_job(b, "cpu").at("job.val_data"));
  EXPECT_NE(describe_job(a, "cpu"), describe_job(a, "cuda sm_90"));
}

TEST_F(RankAgreement, MissingOrCorruptTokenFilesAreValuesToo) {
  Config config = validated_defaults();
  config.data.train_file = (dir_ / "none.bin").string();
  config.data.val_file = (dir_ / "bad.bin").string();
  std::ofstream((dir_ / "bad.bin").string()) << std::string(100, 'x');  // past the header: bad magic
  const JobDescription job = describe_job(config, "cpu");
  EXPECT_EQ(job.at("job.train_data"), "missing: " + config.data.train_file);
  EXPECT_EQ(job.at("job.val_data"), "unreadable: " + config.data.val_file);
  config.data.val_file = "";
  EXPECT_EQ(describe_job(config, "cpu").at("job.val_data"), "none");
  config.train.val_every = 0;  // no validation: the file does not matter
  config.data.val_file = (dir_ / "bad.bin").string();
  EXPECT_EQ(describe_job(config, "cpu").at("job.val_data"), "unused");
}

TEST_F(RankAgreement, ReadTokenHeaderReadsWhatTheFileStores) {
  const std::string path = write_tokens("h.bin", {9, 8, 7}, 10);
  TokenFileHeader header;
  ASSERT_TRUE(read_token_header(path, &header).is_ok());
  EXPECT_EQ(header.count, 3u);
  EXPECT_EQ(header.vocab_size, 10u);
  std::vector<int32_t> tokens;
  TokenFileHeader full;
  ASSERT_TRUE(read_token_file(path, &tokens, &full).is_ok());
  EXPECT_EQ(full.token_crc32, header.token_crc32);
  const uint8_t bytes[6] = {9, 0, 8, 0, 7, 0};
  EXPECT_EQ(header.token_crc32, crc32(bytes, sizeof(bytes)));
  // A truncated file fails on its header alone.
  fs::resize_file(path, 64 + 4);
  const Status s = read_token_header(path, &header);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_CONTAINS(s.message(), "size mismatch");
  EXPECT_EQ(read_token_header((dir_ / "none.bin").string(), &header).code(), StatusCode::kNotFound);
}

TEST(RankList, RunsBecomeRanges) {
  EXPECT_EQ(rank_list({}), "");
  EXPECT_EQ(rank_list({3}), "3");
  EXPECT_EQ(rank_list({0, 1}), "0-1");
  EXPECT_EQ(rank_list({0, 2, 3, 4, 7}), "0, 2-4, 7");
}

TEST(DescribeDisagreement, EmptyWhenEveryRankAgrees) {
  const JobDescription job = {{"train.lr", "0.001"}, {"job.backend", "cpu"}};
  EXPECT_EQ(describe_disagreement({}), "");
  EXPECT_EQ(describe_disagreement({job}), "");
  EXPECT_EQ(describe_disagreement({job, job, job}), "");
}

TEST(DescribeDisagreement, NamesEachKeyWithItsValuesAndRanks) {
  const JobDescription job = {{"train.lr", "0.001"}, {"job.backend", "cuda sm_90"}, {"model.n_layer", "12"}};
  std::vector<JobDescription> ranks(5, job);
  ranks[1]["train.lr"] = "0.002";
  ranks[4]["job.backend"] = "cpu";
  ranks[2].erase("model.n_layer");  // another build without the key
  const std::string message = describe_disagreement(ranks);
  EXPECT_CONTAINS(message, "3 key(s) differ");
  EXPECT_CONTAINS(message, "\n  job.backend: cuda sm_90 on ranks 0-3; cpu on rank 4");
  EXPECT_CONTAINS(message, "\n  model.n_layer: 12 on ranks 0-1, 3-4; (absent) on rank 2");
  EXPECT_CONTAINS(message, "\n  train.lr: 0.001 on ranks 0, 2-4; 0.002 on rank 1");
  EXPECT_EQ(message.find("more key"), std::string::npos);
}

TEST(DescribeDisagreement, ListsTheFirstKeysThenCountsTheRest) {
  JobDescription a, b;
  for (int i = 0; i < 12; ++i) {
    a.emplace(str_cat("k", 10 + i), "1");
    b.emplace(str_cat("k", 10 + i), "2");
  }
  const std::string message = describe_disagreement({a, b}, 3);
  EXPECT_CONTAINS(message, "12 key(s) differ");
  EXPECT_CONTAINS(message, "\n  k12: 1 on rank 0; 2 on rank 1\n  ... and 9 more key(s)");
  EXPECT_EQ(message.find("k13"), std::string::npos);
}

}  // namespace
}  // namespace perigee::runtime
