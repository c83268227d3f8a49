// `styleclip tokenize` — CLIP token ids of texts, from a bundle's vocabulary or a merges file.
#include <styleclip/error.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/tokenizer.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace {

struct TokenizeOptions {
  std::string models;
  std::string vocab;
  int vocab_merges = 48894;
  int context = 77;
  bool json = false;
  std::vector<std::string> texts;
};

int run_tokenize(const TokenizeOptions& o) {
  std::filesystem::path vocab = o.vocab;
  int merges = o.vocab_merges;
  int context = o.context;
  if (vocab.empty()) {
    const auto bundle = Bundle::open(resolve_models(o.models));
    vocab = bundle.file("vocab");
    merges = bundle.clip().vocab_merges;
    context = bundle.clip().context_length;
  }
  const Tokenizer tok(vocab, merges);
  for (const auto& text : o.texts) {
    const auto t = tok.tokenize(text, context);
    if (t.truncated) spdlog::warn("'{}' is longer than {} tokens: it was cut", text, context);
    if (o.json) {
      std::cout << nlohmann::json{{"text", text}, {"ids", t.ids}, {"truncated", t.truncated}}.dump()
                << "\n";
      continue;
    }
    // Text form: the ids up to the end token (the zero padding is implied).
    std::string line;
    for (const auto id : t.ids) {
      if (id == 0) break;
      line += (line.empty() ? "" : " ") + std::to_string(id);
    }
    std::cout << line << "\n";
  }
  return 0;
}

}  // namespace

void setup_tokenize(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* sub = app.add_subcommand("tokenize", "show CLIP's token ids for texts (one line per text)");
  add_models_option(*sub, o->models);
  sub->add_option("--vocab", o->vocab,
                  "a CLIP merges file (bpe_simple_vocab_16e6.txt.gz) instead of a bundle")
      ->check(CLI::ExistingFile);
  sub->add_option("--vocab-merges", o->vocab_merges, "merges to use with --vocab")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--context", o->context, "context length with --vocab")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  sub->add_flag("--json", o->json, R"(one JSON object per line: {"text", "ids", "truncated"})");
  sub->add_option("texts", o->texts, "texts to tokenize")->required();
  reg.push_back({sub, [o] { return run_tokenize(*o); }});
}

}  // namespace styleclip::cli
