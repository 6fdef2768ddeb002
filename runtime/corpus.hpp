// Corpus building for perigee-data: text files -> documents -> deterministic train/val split ->
// byte-level token files <out>_train.bin / <out>_val.bin. Rules are documented in docs/data.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace perigee::runtime {

inline constexpr const char* kDefaultFortunesDir = "/usr/share/games/fortunes";
// Written after every document in the token stream (fortune-file style: a line holding only '%').
inline constexpr std::string_view kDocumentSeparator = "\n%\n";

// Fortune file -> its entries (separated by lines holding only '%'). CRLF becomes LF; each document
// loses its leading blank lines and trailing whitespace; empty documents are dropped.
std::vector<std::string> split_fortunes(std::string_view text);
// Plain text -> paragraphs (separated by one or more blank / whitespace-only lines), trimmed the same way.
std::vector<std::string> split_paragraphs(std::string_view text);

// The plain fortune files directly under dir, sorted by name: regular files only, skipping *.dat
// index files, *.u8 files, symlinks and sub-folders (off/, other languages). kNotFound with an
// "apt-get install fortunes" hint when the folder is missing or holds no fortune file.
Status list_fortune_files(const std::string& dir, std::vector<std::string>* files);
Status read_text_file(const std::string& path, std::string* text);

// Deterministic split: a seeded 64-bit hash of the document's bytes mapped to [0, 1), compared with
// val_fraction. Depends only on (text, seed), so duplicates share a split and input order is irrelevant.
bool is_validation_document(std::string_view document, double val_fraction, uint64_t seed);
// Every document followed by kDocumentSeparator.
std::string join_documents(const std::vector<std::string>& documents);

struct CorpusOptions {
  std::string out_prefix;  // writes <out_prefix>_train.bin and <out_prefix>_val.bin
  bool fortunes = false;   // include the fortunes package's files
  std::string fortunes_dir = kDefaultFortunesDir;
  std::vector<std::string> inputs;  // plain text files, split into paragraphs
  double val_fraction = 0.05;       // in [0, 1)
  uint64_t seed = 1;
};

struct SplitSummary {
  std::string path;
  uint64_t documents = 0;
  uint64_t text_bytes = 0;  // bytes of the documents themselves
  uint64_t tokens = 0;      // tokens in the file (documents plus separators)
};

struct CorpusSummary {
  std::vector<std::string> files;  // input files read, in order
  SplitSummary train;
  SplitSummary val;
};

// Reads the inputs, splits, and writes both token files (creating the output folder).
Status build_corpus(const CorpusOptions& options, CorpusSummary* summary);

}  // namespace perigee::runtime
