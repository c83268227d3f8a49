// styleclip/models/lpips.h — the bundle's LPIPS-VGG perceptual distance (optional), the photo
// projector's perceptual loss when present (Zhang et al. 2018, version 0.1).
//
// Wraps `lpips.pt` as written by scripts/export_bundle.py --lpips (VGG16 features from
// torchvision's weights, LPIPS' linear layers). Frozen; differentiable in both inputs.
#pragma once

#include <memory>

#include <torch/types.h>

#include <styleclip/models/bundle.h>

namespace styleclip {

class Lpips {
 public:
  Lpips(const Bundle& bundle, torch::Device device);

  /// Images [N, 3, H, W] in [-1, 1], the same shape → [N]. Larger than 256 px: both are
  /// area-averaged to 256 first (where the StyleGAN2 projector and e4e compare them).
  [[nodiscard]] torch::Tensor distance(const torch::Tensor& a, const torch::Tensor& b) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  torch::Device device_;
};

}  // namespace styleclip
