// Fuzzes the tokenizer on arbitrary text (cleaning, Unicode handling, byte-pair merges), with the
// vocabulary in $STYLECLIP_FUZZ_VOCAB (default: the demonstration bundle's).
#include <styleclip/error.h>
#include <styleclip/models/tokenizer.h>

#include <cstdlib>
#include <memory>

#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace styleclip;
  static const auto tokenizer = [] {
    const char* env = std::getenv("STYLECLIP_FUZZ_VOCAB");
    return std::make_unique<Tokenizer>(env != nullptr ? env : STYLECLIP_FUZZ_DEFAULT_VOCAB);
  }();
  try {
    (void)tokenizer->tokenize(fuzz::as_view(data, size), 77);
  } catch (const Error&) {
  }
  return 0;
}
