// styleclip/models/identity.h — the bundle's face-identity model (ArcFace IR-SE50, optional).
//
// Wraps `identity.pt` as written by scripts/export_bundle.py --identity. `features` applies
// StyleCLIP's preprocessing (criteria/id_loss.py `extract_feats`, docs/algorithms.md §1.3):
// adaptive average pool to 256 when the image is not 256 px, crop rows 35:223 and columns 32:220,
// adaptive average pool to 112; the [-1, 1] image goes in as it is. Output: L2-normalised
// embeddings. Frozen; differentiable with respect to its input. Use from one thread at a time.
#pragma once

#include <memory>

#include <torch/types.h>

#include <styleclip/models/bundle.h>

namespace styleclip {

class IdentityModel {
 public:
  IdentityModel(const Bundle& bundle, torch::Device device);

  /// Generator images [N, 3, H, W] in [-1, 1] → [N, D] unit vectors.
  [[nodiscard]] torch::Tensor features(const torch::Tensor& images) const;
  /// The backbone alone on [N, 3, 112, 112] inputs.
  [[nodiscard]] torch::Tensor embed(const torch::Tensor& input_112) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  torch::Device device_;
};

}  // namespace styleclip
