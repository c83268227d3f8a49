// Fuzzes the prompts-file reader of `edit --prompts`.
#include <styleclip/error.h>

#include <styleclip/workflows/batch.h>
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace styleclip;
  const auto path = fuzz::write("prompts.txt", fuzz::as_view(data, size));
  try {
    (void)read_prompts(path);
  } catch (const Error&) {
  }
  return 0;
}
