// perigee-data: builds byte-level token files <out>_train.bin / <out>_val.bin from text (the
// fortunes package and/or plain text files). Thin CLI over runtime/corpus.hpp; see docs/data.md.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/version.hpp"
#include "runtime/cli_checks.hpp"
#include "runtime/corpus.hpp"

namespace {

void print_split(const char* name, const perigee::runtime::SplitSummary& s) {
  std::printf("  %-5s %8llu documents  %10llu text bytes  %10llu tokens  -> %s\n", name,
              static_cast<unsigned long long>(s.documents), static_cast<unsigned long long>(s.text_bytes),
              static_cast<unsigned long long>(s.tokens), s.path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  perigee::runtime::CorpusOptions options;
  CLI::App app{
      "perigee-data: text -> byte-level token files <out>_train.bin and <out>_val.bin.\n"
      "Fortune files are split at lines holding only '%', other inputs at blank lines; each document\n"
      "goes to val with probability --val-fraction (seeded hash of its text). See docs/data.md."};
  app.set_version_flag("--version", perigee::version_text("perigee-data"));
  app.add_option("--out", options.out_prefix, "output prefix: writes <out>_train.bin and <out>_val.bin")
      ->required();
  app.add_flag("--fortunes", options.fortunes, "include the fortunes package's English fortune files");
  app.add_option("--fortunes-dir", options.fortunes_dir, "where the fortune files are")
      ->default_val(std::string(perigee::runtime::kDefaultFortunesDir));
  app.add_option("--input", options.inputs, "plain text file(s), split into blank-line separated paragraphs");
  app.add_option("--val-fraction", options.val_fraction, "probability that a document goes to val, in [0, 1)")
      ->default_val(0.05)
      ->check(perigee::runtime::cli::finite_number("a number in [0, 1)",
                                                   [](double v) { return v >= 0.0 && v < 1.0; }));
  app.add_option("--seed", options.seed, "seed of the train/val assignment, in [0, 2^64)")
      ->default_val(1)
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            uint64_t v = 0;  // CLI11 alone reads -1 as 2^64 - 1 and clamps an overflow
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) return std::string();
            return "expected an integer in [0, 2^64), got '" + text + "'";
          },
          "an integer in [0, 2^64)"));
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "perigee-data"); rc >= 0)
    return rc;

  perigee::runtime::CorpusSummary summary;
  const perigee::Status status = perigee::runtime::build_corpus(options, &summary);
  if (!status.is_ok()) {
    std::fprintf(stderr, "perigee-data: error: %s\n", status.to_string().c_str());
    return 1;
  }
  std::printf("perigee-data: %zu input files, val fraction %g, seed %llu\n", summary.files.size(),
              options.val_fraction, static_cast<unsigned long long>(options.seed));
  print_split("train", summary.train);
  print_split("val", summary.val);
  if (summary.val.documents == 0 && options.val_fraction > 0) {
    std::fprintf(stderr, "perigee-data: warning: the validation split is empty (too little text?)\n");
  } else if (summary.val.documents == 0) {
    std::fprintf(stderr,
                 "perigee-data: warning: --val-fraction 0: the validation split is empty; a run with "
                 "[train] val_every > 0 cannot use it\n");
  }
  return 0;
}
