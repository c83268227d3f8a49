// styleclip/models/encoder.h — the bundle's image encoder (e4e, optional): an aligned face → W+
// in one forward pass (docs/algorithms.md §4.2), for photos (`invert --with encoder`, `edit
// PHOTO`).
//
// Wraps `encoder.pt` as written by scripts/export_bundle.py --encoder (Encoder4Editing with the
// generator's latent_avg already added, as e4e's psp.py returns it). `encode` takes the aligned
// crop at any size in [-1, 1] and brings it to the encoder's input size first (e4e's
// Resize((256, 256)): area averaging when shrinking, bilinear when growing). Frozen. Use from one
// thread at a time.
#pragma once

#include <memory>

#include <torch/types.h>

#include <styleclip/models/bundle.h>

namespace styleclip {

class Encoder {
 public:
  /// Loads and dry-runs the encoder; a bundle error names the file when it is not usable or its
  /// W+ does not fit the bundle's generator.
  Encoder(const Bundle& bundle, torch::Device device);

  /// Images [N, 3, H, W] in [-1, 1] → W+ [N, num_ws, w_dim] (fp32, on the device).
  [[nodiscard]] torch::Tensor encode(const torch::Tensor& images) const;
  [[nodiscard]] int input_size() const { return input_size_; }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  torch::Device device_;
  int input_size_ = 256;
};

}  // namespace styleclip
