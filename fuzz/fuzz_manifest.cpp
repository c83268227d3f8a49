// Fuzzes the bundle manifest parser: arbitrary bytes as manifest.json.
#include <styleclip/error.h>
#include <styleclip/models/bundle.h>

#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace styleclip;
  const auto dir = fuzz::scratch() / "bundle";
  std::filesystem::create_directories(dir);
  fuzz::write("bundle/manifest.json", fuzz::as_view(data, size));
  try {
    (void)Bundle::open(dir);
  } catch (const Error&) {
  }
  return 0;
}
