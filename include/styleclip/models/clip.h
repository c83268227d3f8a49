// styleclip/models/clip.h — the bundle's CLIP model (TorchScript) and tokenizer.
//
// Wraps `clip.pt` as written by scripts/export_bundle.py (OpenAI's architecture, docs/algorithms.md
// §7): `encode_text` tokenizes with the bundle's BPE vocabulary and embeds; `encode_image` takes a
// generator image in [-1, 1] of any size and stays differentiable (the loss path);
// `embed_image` applies CLIP's own photo preprocessing (§7.2) to an 8-bit RGB image. All
// embeddings are unnormalised, as OpenAI's encode_* return them. The model is frozen; inputs
// that require grad get gradients through it. Use from one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include <styleclip/models/bundle.h>
#include <styleclip/models/tokenizer.h>

namespace styleclip {

class Clip {
 public:
  Clip(const Bundle& bundle, torch::Device device);

  [[nodiscard]] const ClipInfo& info() const { return info_; }
  [[nodiscard]] const Tokenizer& tokenizer() const { return *tokenizer_; }
  [[nodiscard]] torch::Device device() const { return device_; }
  /// exp(logit_scale): 100 for OpenAI's models.
  [[nodiscard]] double logit_scale() const;

  /// Token ids [N, context_length] (int64) for texts; a text that does not fit is cut (keeping
  /// the end token) with a warning naming it. Empty texts are allowed (CLIP embeds them).
  [[nodiscard]] torch::Tensor tokenize(const std::vector<std::string>& texts) const;
  /// Text embeddings [N, embed_dim]. Encodes the tokens only up to the longest text's end
  /// token (see encode_tokens).
  [[nodiscard]] torch::Tensor encode_text(const std::vector<std::string>& texts) const;
  /// Embeddings of token ids [N, L], L <= context_length. The text transformer's attention is
  /// causal and the embedding is read at each row's end token, so the zero padding after the
  /// longest row's end token changes nothing: it is dropped before encoding (for the 80
  /// ImageNet templates of the global method about 5× fewer positions than CLIP's 77).
  [[nodiscard]] torch::Tensor encode_tokens(const torch::Tensor& tokens) const;

  /// Model-only image embedding of pixels already at the model's resolution and normalised
  /// with its mean/std: [N, 3, R, R] → [N, embed_dim].
  [[nodiscard]] torch::Tensor encode_pixels(const torch::Tensor& pixels) const;
  /// Generator images [N, 3, H, W] in [-1, 1], any size → [N, embed_dim], differentiable:
  /// mapped to [0, 1], resized to R×R (bicubic, antialiased when shrinking, as PIL does),
  /// normalised with CLIP's mean/std.
  [[nodiscard]] torch::Tensor encode_image(const torch::Tensor& images) const;

  /// CLIP's photo preprocessing (clip/clip.py `_transform`): resize the shorter side to R with
  /// antialiased bicubic (a = −0.5, like PIL) rounding to 8 bits as PIL does, centre crop,
  /// scale to [0, 1], normalise. [H, W, 3] uint8 RGB → [1, 3, R, R] float on the device.
  [[nodiscard]] torch::Tensor preprocess(const torch::Tensor& hwc_uint8) const;
  /// preprocess + encode_pixels.
  [[nodiscard]] torch::Tensor embed_image(const torch::Tensor& hwc_uint8) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::shared_ptr<Tokenizer> tokenizer_;
  ClipInfo info_;
  torch::Device device_;
  torch::Tensor mean_;  // [1, 3, 1, 1]
  torch::Tensor std_;   // [1, 3, 1, 1]
};

}  // namespace styleclip
