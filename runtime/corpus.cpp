// Corpus building: document splitting, the seeded train/val assignment and token file output.
#include "runtime/corpus.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "runtime/token_file.hpp"
#include "runtime/tokenizer.hpp"

namespace perigee::runtime {
namespace {

namespace fs = std::filesystem;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

bool is_blank(std::string_view line) {
  for (char c : line) {
    if (!is_space(c)) return false;
  }
  return true;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Drops leading blank lines (keeping the first text line's indentation) and trailing whitespace.
std::string trim_document(std::string_view doc) {
  while (!doc.empty()) {
    const size_t nl = doc.find('\n');
    const std::string_view first = nl == std::string_view::npos ? doc : doc.substr(0, nl);
    if (!is_blank(first)) break;
    doc = nl == std::string_view::npos ? std::string_view() : doc.substr(nl + 1);
  }
  while (!doc.empty() && is_space(doc.back())) doc.remove_suffix(1);
  return std::string(doc);
}

// Splits text into lines (CRLF or LF), calling is_separator on each; a separator line ends the
// current document and is not part of any document.
template <typename IsSeparator>
std::vector<std::string> split_documents(std::string_view text, IsSeparator is_separator) {
  std::vector<std::string> documents;
  std::string current;
  auto flush = [&] {
    std::string doc = trim_document(current);
    if (!doc.empty()) documents.push_back(std::move(doc));
    current.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    if (is_separator(line)) {
      flush();
    } else {
      current.append(line);
      current.push_back('\n');
    }
  }
  flush();
  return documents;
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Status stage_split(const std::string& path, const std::vector<std::string>& documents,
                   SplitSummary* summary) {
  summary->path = path;
  summary->documents = documents.size();
  summary->text_bytes = 0;
  for (const std::string& d : documents) summary->text_bytes += d.size();
  const std::vector<int32_t> tokens = encode_bytes(join_documents(documents));
  summary->tokens = tokens.size();
  return stage_token_file(path, tokens, kByteVocabSize);
}

// An output path the tool would write over: a folder, or one of the inputs (a token file passed as
// text by mistake would be replaced by tokens of itself).
Status check_output_path(const std::string& out, const std::vector<std::string>& inputs) {
  std::error_code ec;
  PERIGEE_REQUIRE(!fs::is_directory(out, ec), StatusCode::kInvalidArgument, "output ", out,
                  " is a folder; choose another --out prefix");
  for (const std::string& in : inputs) {
    PERIGEE_REQUIRE(!fs::equivalent(in, out, ec), StatusCode::kInvalidArgument, "input ", in,
                    " is also the output ", out,
                    ": writing it would destroy the input; choose another --out");
  }
  return Status::ok();
}

}  // namespace

std::vector<std::string> split_fortunes(std::string_view text) {
  return split_documents(text, [](std::string_view line) { return line == "%"; });
}

std::vector<std::string> split_paragraphs(std::string_view text) {
  return split_documents(text, [](std::string_view line) { return is_blank(line); });
}

Status list_fortune_files(const std::string& dir, std::vector<std::string>* files) {
  files->clear();
  std::error_code ec;
  const bool is_dir = fs::is_directory(dir, ec);
  // A path that is there but no folder is a wrong --fortunes-dir, not a missing package.
  PERIGEE_REQUIRE(is_dir || !fs::exists(fs::symlink_status(dir, ec)), StatusCode::kInvalidArgument,
                  "fortune folder ", dir, " is not a folder");
  PERIGEE_REQUIRE(is_dir, StatusCode::kNotFound, "fortunes package not installed: folder ", dir,
                  " not found; install it with: apt-get install fortunes");
  fs::directory_iterator it(dir, ec);
  PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot list fortunes folder ", dir, ": ", ec.message());
  for (const fs::directory_entry& entry : it) {
    const fs::file_status st = entry.symlink_status(ec);
    if (ec || !fs::is_regular_file(st)) continue;  // symlinks (*.u8), off/ and other folders
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || ends_with(name, ".dat") || ends_with(name, ".u8")) continue;
    files->push_back(entry.path().string());
  }
  std::sort(files->begin(), files->end());
  PERIGEE_REQUIRE(!files->empty(), StatusCode::kNotFound,
                  "fortunes package not installed: no fortune files in ", dir,
                  "; install it with: apt-get install fortunes");
  return Status::ok();
}

// Not core/read_file.hpp's read_small_file: that refuses FIFOs, and a text input may be a pipe
// (--input <(zcat corpus.gz)).
Status read_text_file(const std::string& path, std::string* text) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  PERIGEE_REQUIRE(fs::exists(st), StatusCode::kNotFound, "input file ", path, " not found");
  PERIGEE_REQUIRE(!fs::is_directory(st), StatusCode::kInvalidArgument, "input ", path,
                  " is a folder, not a text file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  PERIGEE_REQUIRE(f != nullptr, StatusCode::kIoError, "cannot read input file ", path, ": ",
                  std::strerror(errno));
  text->clear();
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) text->append(buffer, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  PERIGEE_REQUIRE(!failed, StatusCode::kIoError, "cannot read input file ", path, ": ", std::strerror(err));
  PERIGEE_REQUIRE(!text->starts_with(std::string_view(kTokenFileMagic, sizeof(kTokenFileMagic))),
                  StatusCode::kInvalidArgument, "input ", path,
                  " is a Perigee token file (perigee-data output), not text");
  return Status::ok();
}

bool is_validation_document(std::string_view document, double val_fraction, uint64_t seed) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a 64
  for (char c : document) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  const uint64_t mixed = mix64(h ^ mix64(seed + 0x9E3779B97F4A7C15ull));
  const double u = static_cast<double>(mixed >> 11) * 0x1.0p-53;  // uniform in [0, 1)
  return u < val_fraction;
}

std::string join_documents(const std::vector<std::string>& documents) {
  size_t total = 0;
  for (const std::string& d : documents) total += d.size() + kDocumentSeparator.size();
  std::string out;
  out.reserve(total);
  for (const std::string& d : documents) {
    out.append(d);
    out.append(kDocumentSeparator);
  }
  return out;
}

Status build_corpus(const CorpusOptions& options, CorpusSummary* summary) {
  PERIGEE_REQUIRE(summary != nullptr, StatusCode::kInvalidArgument, "build_corpus: summary is null");
  PERIGEE_REQUIRE(!options.out_prefix.empty(), StatusCode::kInvalidArgument,
                  "no output prefix: pass --out PREFIX (writes PREFIX_train.bin and PREFIX_val.bin)");
  PERIGEE_REQUIRE(options.out_prefix.back() != '/', StatusCode::kInvalidArgument, "output prefix ",
                  options.out_prefix, " ends in '/' (it would write ", options.out_prefix,
                  "_train.bin): pass a folder and a name, e.g. ", options.out_prefix, "corpus");
  PERIGEE_REQUIRE(options.fortunes || !options.inputs.empty(), StatusCode::kInvalidArgument,
                  "no inputs: pass --fortunes and/or --input FILE");
  PERIGEE_REQUIRE(options.val_fraction >= 0.0 && options.val_fraction < 1.0, StatusCode::kInvalidArgument,
                  "val fraction ", options.val_fraction, " is outside [0, 1)");
  *summary = CorpusSummary{};

  struct Source {
    std::string path;
    bool fortune_format;
  };
  std::vector<Source> sources;
  if (options.fortunes) {
    std::vector<std::string> files;
    PERIGEE_CHECK(list_fortune_files(options.fortunes_dir, &files));
    for (std::string& f : files) sources.push_back({std::move(f), true});
  }
  for (const std::string& f : options.inputs) sources.push_back({f, false});

  std::vector<std::string> input_paths;
  for (const Source& source : sources) input_paths.push_back(source.path);
  PERIGEE_CHECK(check_output_path(options.out_prefix + "_train.bin", input_paths));
  PERIGEE_CHECK(check_output_path(options.out_prefix + "_val.bin", input_paths));

  std::vector<std::string> train;
  std::vector<std::string> val;
  std::string text;
  for (const Source& source : sources) {
    PERIGEE_CHECK(read_text_file(source.path, &text));
    summary->files.push_back(source.path);
    std::vector<std::string> docs = source.fortune_format ? split_fortunes(text) : split_paragraphs(text);
    for (std::string& d : docs) {
      (is_validation_document(d, options.val_fraction, options.seed) ? val : train).push_back(std::move(d));
    }
  }
  PERIGEE_REQUIRE(!train.empty() || !val.empty(), StatusCode::kInvalidArgument, "the inputs hold no text (",
                  sources.size(), " files, 0 documents)");
  PERIGEE_REQUIRE(!train.empty(), StatusCode::kInvalidArgument, "all ", val.size(),
                  " documents went to the validation split; lower --val-fraction or add text");

  const fs::path parent = fs::path(options.out_prefix).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot create output folder ", parent.string(), ": ",
                    ec.message());
  }
  // Both splits are written in full before either replaces a file, so a failure leaves the old pair.
  const std::string train_path = options.out_prefix + "_train.bin",
                    val_path = options.out_prefix + "_val.bin";
  PERIGEE_CHECK(stage_split(train_path, train, &summary->train));
  const Status staged = stage_split(val_path, val, &summary->val);
  if (!staged.is_ok()) {
    discard_staged_token_file(train_path);
    return staged;
  }
  const Status committed = commit_token_file(val_path);
  if (!committed.is_ok()) {
    discard_staged_token_file(train_path);
    return committed;
  }
  return commit_token_file(train_path);
}

}  // namespace perigee::runtime
