// Fuzzes the latent readers: the first byte picks .npy (our parser) or .pt (torch.save's zip and
// pickle, read through LibTorch); the rest is the file.
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>

#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace styleclip;
  if (size < 1) return 0;
  const auto path = fuzz::write((data[0] & 1) != 0 ? "latent.pt" : "latent.npy",
                                fuzz::as_view(data + 1, size - 1));
  try {
    (void)load_latents(path, 8, 32);
  } catch (const Error&) {
  }
  return 0;
}
