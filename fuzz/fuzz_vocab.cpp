// Fuzzes the merges-file (vocabulary) reader: the input is gzip-compressed first, so the fuzzer
// explores the text format rather than the gzip framing (the raw bytes are also tried as is).
#include <styleclip/error.h>
#include <styleclip/models/tokenizer.h>

#include <zlib.h>

#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace styleclip;
  const auto path = fuzz::scratch() / "vocab.txt.gz";
  gzFile gz = gzopen(path.c_str(), "wb");
  if (gz == nullptr) return 0;
  if (size > 0) gzwrite(gz, data, static_cast<unsigned>(size));
  gzclose(gz);
  for (const auto& p : {path, fuzz::write("vocab.raw.gz", fuzz::as_view(data, size))}) {
    try {
      const Tokenizer t(p, 1000);
      (void)t.tokenize("a red circle on a blue background", 16);
    } catch (const Error&) {
    }
  }
  return 0;
}
