// The corpus builder behind perigee-data: fortune and plain-text splitting, the seeded validation
// split, fortune file listing, and build_corpus's outputs and errors (it never destroys an input or
// leaves half a pair of token files).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "runtime/corpus.hpp"
#include "runtime/token_file.hpp"
#include "runtime/tokenizer.hpp"
#include "tests/runtime/data_test_util.hpp"

namespace perigee::runtime {
namespace {

namespace fs = std::filesystem;
using testing_data::DataTest;

// ---- corpus (perigee-data) ----

TEST(Corpus, SplitsFortunesAtPercentLines) {
  const std::string text =
      "A day for decisions.\n%\n\nB line one\n\nB line two  \n%\n%\n   \n%\nC\r\n%\r\n  D indented\n  more\n";
  const std::vector<std::string> docs = split_fortunes(text);
  EXPECT_EQ(docs, (std::vector<std::string>{"A day for decisions.", "B line one\n\nB line two", "C",
                                            "  D indented\n  more"}));
  EXPECT_TRUE(split_fortunes("%\n%\n").empty());
  EXPECT_EQ(split_fortunes("no trailing newline"), std::vector<std::string>{"no trailing newline"});
  EXPECT_EQ(split_fortunes("100%\n"), std::vector<std::string>{"100%"});
}

TEST(Corpus, SplitsPlainTextAtBlankLines) {
  const std::string text = "\n\np1 l1\np1 l2\n\n  \t\n\n  p2 indented\r\n\r\np3";
  EXPECT_EQ(split_paragraphs(text), (std::vector<std::string>{"p1 l1\np1 l2", "  p2 indented", "p3"}));
  EXPECT_TRUE(split_paragraphs("\n \n\t\n").empty());
}

TEST(Corpus, ValidationAssignmentIsSeededAndProportional) {
  int val = 0, val_other_seed = 0, disagree = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const std::string doc = "document number " + std::to_string(i);
    const bool v = is_validation_document(doc, 0.2, 1);
    EXPECT_EQ(v, is_validation_document(doc, 0.2, 1));
    EXPECT_FALSE(is_validation_document(doc, 0.0, 1));
    EXPECT_TRUE(is_validation_document(doc, 0.999999999, 1));
    const bool w = is_validation_document(doc, 0.2, 2);
    val += v;
    val_other_seed += w;
    disagree += v != w;
  }
  EXPECT_NEAR(val, 0.2 * n, 120);  // ~5 sigma
  EXPECT_NEAR(val_other_seed, 0.2 * n, 120);
  EXPECT_GT(disagree, 400) << "seed does not change the split";
}

TEST(Corpus, JoinPutsTheSeparatorAfterEveryDocument) {
  EXPECT_EQ(join_documents({"a", "b c"}), "a\n%\nb c\n%\n");
  EXPECT_EQ(join_documents({}), "");
}

TEST_F(DataTest, ListsOnlyPlainFortuneFiles) {
  const fs::path f = dir_ / "fortunes";
  fs::create_directories(f / "off");
  write_text((f / "zeta").string(), "z\n%\n");
  write_text((f / "alpha").string(), "a\n%\n");
  write_text((f / "alpha.dat").string(), "index");
  write_text((f / "beta.u8").string(), "utf8 copy");
  write_text((f / "off" / "rude").string(), "no\n%\n");
  fs::create_symlink("alpha", f / "alpha.u8");
  fs::create_symlink("zeta", f / "link");
  std::vector<std::string> files;
  Status st = list_fortune_files(f.string(), &files);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(files, (std::vector<std::string>{(f / "alpha").string(), (f / "zeta").string()}));

  st = list_fortune_files(path("nope"), &files);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("apt-get install fortunes"), std::string::npos) << st.message();
  st = list_fortune_files((f / "zeta").string(), &files);  // a file given as the folder
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fortune folder " + (f / "zeta").string() + " is not a folder"),
            std::string::npos)
      << st.message();
  fs::create_directories(dir_ / "empty");
  st = list_fortune_files(path("empty"), &files);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("apt-get install fortunes"), std::string::npos) << st.message();
}

TEST(Corpus, SystemFortunesPackageListsPlainFiles) {
  if (!fs::is_directory(kDefaultFortunesDir)) GTEST_SKIP() << "fortunes package not installed";
  std::vector<std::string> files;
  Status st = list_fortune_files(kDefaultFortunesDir, &files);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_GT(files.size(), 10u);
  for (const std::string& f : files) {
    EXPECT_FALSE(f.ends_with(".dat") || f.ends_with(".u8")) << f;
    EXPECT_FALSE(fs::is_symlink(f)) << f;
  }
}

TEST_F(DataTest, BuildCorpusWritesBothSplits) {
  const fs::path f = dir_ / "fortunes";
  fs::create_directories(f);
  std::string fortune_text;
  std::vector<std::string> all_docs;
  for (int i = 0; i < 60; ++i) {
    const std::string d = "Fortune " + std::to_string(i) + ": caf\xc3\xa9 wisdom.";
    fortune_text += d + "\n%\n";
    all_docs.push_back(d);
  }
  write_text((f / "wisdom").string(), fortune_text);
  write_text((f / "wisdom.dat").string(), std::string("\0\0\x02", 3));
  write_text(path("book.txt"), "First paragraph\nof the book.\n\nSecond paragraph.\n");
  all_docs.push_back("First paragraph\nof the book.");
  all_docs.push_back("Second paragraph.");

  CorpusOptions o;
  o.out_prefix = path("out/sub/corpus");
  o.fortunes = true;
  o.fortunes_dir = f.string();
  o.inputs = {path("book.txt")};
  o.val_fraction = 0.3;
  o.seed = 11;
  CorpusSummary summary;
  Status st = build_corpus(o, &summary);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(summary.files, (std::vector<std::string>{(f / "wisdom").string(), path("book.txt")}));
  EXPECT_EQ(summary.train.path, path("out/sub/corpus_train.bin"));
  EXPECT_EQ(summary.val.path, path("out/sub/corpus_val.bin"));
  EXPECT_EQ(summary.train.documents + summary.val.documents, all_docs.size());
  EXPECT_GT(summary.val.documents, 5u);
  EXPECT_GT(summary.train.documents, 30u);

  // Decode both files back into documents: together they are exactly the input documents, and
  // each landed in the split its hash says.
  std::multiset<std::string> seen;
  for (const SplitSummary* split : {&summary.train, &summary.val}) {
    std::vector<int32_t> tokens;
    ASSERT_TRUE(read_token_file(split->path, &tokens, nullptr).is_ok());
    EXPECT_EQ(tokens.size(), split->tokens);
    const std::string text = decode_bytes(tokens);
    const std::vector<std::string> docs = split_fortunes(text);
    EXPECT_EQ(docs.size(), split->documents);
    EXPECT_EQ(join_documents(docs), text);
    uint64_t bytes = 0;
    for (const std::string& d : docs) {
      bytes += d.size();
      EXPECT_EQ(is_validation_document(d, 0.3, 11), split == &summary.val) << d;
      seen.insert(d);
    }
    EXPECT_EQ(bytes, split->text_bytes);
  }
  EXPECT_EQ(seen, std::multiset<std::string>(all_docs.begin(), all_docs.end()));

  // Deterministic: a rebuild gives identical bytes.
  const std::vector<uint8_t> first = read_bytes(summary.train.path);
  CorpusSummary again;
  ASSERT_TRUE(build_corpus(o, &again).is_ok());
  EXPECT_EQ(read_bytes(again.train.path), first);
}

TEST_F(DataTest, BuildCorpusErrors) {
  CorpusSummary summary;
  CorpusOptions o;
  o.out_prefix = path("c");
  Status st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("no inputs"), std::string::npos) << st.message();

  write_text(path("t.txt"), "hello\n");
  o.inputs = {path("t.txt")};
  o.out_prefix = path("sub/");  // would write sub/_train.bin
  st = build_corpus(o, &summary);
  EXPECT_NE(st.message().find("ends in '/'"), std::string::npos) << st.message();
  o.out_prefix = path("c");
  o.inputs.clear();

  o.inputs = {path("missing.txt")};
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find(path("missing.txt")), std::string::npos) << st.message();

  o.inputs = {dir_.string()};
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(dir_.string()), std::string::npos) << st.message();

  write_text(path("blank.txt"), "\n \n");
  o.inputs = {path("blank.txt")};
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("no text"), std::string::npos) << st.message();

  write_text(path("t.txt"), "hello\n");
  o.inputs = {path("t.txt")};
  o.val_fraction = 1.0;
  EXPECT_EQ(build_corpus(o, &summary).code(), StatusCode::kInvalidArgument);

  o.val_fraction = 0.05;
  o.fortunes = true;
  o.fortunes_dir = path("no_fortunes_here");
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("apt-get install fortunes"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(path("c_train.bin")));
}

// perigee-data loses nothing: an input that is also an output or a token file is refused, and a pair
// that cannot be written whole leaves the previous pair as it was.
TEST_F(DataTest, BuildCorpusNeverDestroysAnInputOrHalfAPair) {
  CorpusSummary summary;
  CorpusOptions o;
  write_text(path("t.txt"), "first paragraph\n\nsecond paragraph\n\nthird one\n");
  o.inputs = {path("t.txt")};
  o.val_fraction = 0.0;
  o.out_prefix = path("pair");
  ASSERT_TRUE(build_corpus(o, &summary).is_ok());
  const std::vector<uint8_t> train = read_bytes(path("pair_train.bin"));
  const std::vector<uint8_t> val = read_bytes(path("pair_val.bin"));

  // A token file given as text (e.g. --input data/x_train.bin --out data/x).
  o.inputs = {path("pair_train.bin")};
  o.out_prefix = path("other");
  Status st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(path("pair_train.bin") + " is a Perigee token file"), std::string::npos)
      << st.message();
  // A text input that is one of the outputs.
  write_text(path("same_val.bin"), "some text\n");
  o.inputs = {path("same_val.bin")};
  o.out_prefix = path("same");
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("is also the output " + path("same_val.bin")), std::string::npos)
      << st.message();
  EXPECT_FALSE(fs::exists(path("same_train.bin")));
  // A val split that cannot be written (its name is a folder): the train file is not replaced either.
  write_text(path("t.txt"), "other text\n\nentirely\n");
  o.inputs = {path("t.txt")};
  o.out_prefix = path("pair");
  fs::remove(path("pair_val.bin"));
  fs::create_directory(path("pair_val.bin"));
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("output " + path("pair_val.bin") + " is a folder"), std::string::npos)
      << st.message();
  EXPECT_EQ(read_bytes(path("pair_train.bin")), train);
  fs::remove(path("pair_val.bin"));
  // Staging fails for val (an unwritable .tmp name): nothing replaced, no .tmp left behind.
  write_bytes(path("pair_val.bin"), val);
  fs::create_directory(path("pair_val.bin.tmp"));
  st = build_corpus(o, &summary);
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.to_string();
  EXPECT_EQ(read_bytes(path("pair_train.bin")), train);
  EXPECT_EQ(read_bytes(path("pair_val.bin")), val);
  EXPECT_FALSE(fs::exists(path("pair_train.bin.tmp")));
  fs::remove(path("pair_val.bin.tmp"));
  ASSERT_TRUE(build_corpus(o, &summary).is_ok());
  EXPECT_NE(read_bytes(path("pair_train.bin")), train);
}

}  // namespace
}  // namespace perigee::runtime
