// styleclip/losses/losses.h — the terms of StyleCLIP's objectives (docs/algorithms.md §1.1–1.3).
//
// * `ClipResize`: the reference's resize of a generator image to CLIP's input (nearest upsample
//   by u, then average pool by k) as the separable linear map out = R·img·Rᵀ, never materialising
//   the upsampled image (3×7168×7168 floats for 1024 px).
// * `ClipLoss`: 1 − cos(E_img(resize(x)), E_txt(t)) per image, with the reference's raw [-1, 1]
//   input (its known quirk) or CLIP's normalisation.
// * `latent_l2`: the reference's sum of squares (not a mean, not a norm) per input.
// * `IdentityLoss`: 1 − ⟨ArcFace(x̂), ArcFace(x₀)⟩ per image.
// All return one value per batch row, so batched inputs keep their own losses.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include <styleclip/models/clip.h>
#include <styleclip/models/identity.h>

namespace styleclip {

/// The linear map of "nearest ×u upsample, then k×k average pool" from `in` to `out` pixels
/// (u = out / gcd(in, out), k = in / gcd(in, out); for 1024 → 224 that is the reference's ×7 and
/// 32). R[i, a] = |{y ∈ [k·i, k·i + k) : ⌊y/u⌋ = a}| / k.
class ClipResize {
 public:
  ClipResize(int64_t in, int64_t out, torch::Device device);
  /// [N, C, in, in] → [N, C, out, out]; differentiable.
  [[nodiscard]] torch::Tensor operator()(const torch::Tensor& images) const;
  [[nodiscard]] const torch::Tensor& matrix() const { return r_; }
  [[nodiscard]] int64_t upsample() const { return u_; }
  [[nodiscard]] int64_t pool() const { return k_; }

 private:
  torch::Tensor r_;    // [out, in], float32 on the device
  torch::Tensor r64_;  // the same in float64, for float64 inputs
  int64_t u_ = 1;
  int64_t k_ = 1;
};

/// How generator images enter CLIP in the losses.
enum class ClipInput {
  kRaw,         ///< the [-1, 1] image as it is: the reference's behaviour (default)
  kNormalized,  ///< mapped to [0, 1] and normalised with CLIP's mean/std
};
ClipInput parse_clip_input(const std::string& s);
std::string to_string(ClipInput c);

class ClipLoss {
 public:
  /// `text_embeddings` [N or 1, D]: row i is the target of image i (one row: all images).
  ClipLoss(const Clip& clip, int64_t image_size, ClipInput input);
  /// CLIP's embedding of generator images [N, 3, R, R] through this loss's resize: [N, D].
  [[nodiscard]] torch::Tensor embed(const torch::Tensor& images) const;
  /// Cosine similarity of each image with its text row: [N].
  [[nodiscard]] torch::Tensor similarity(const torch::Tensor& images,
                                         const torch::Tensor& text_embeddings) const;
  /// 1 − similarity: [N].
  [[nodiscard]] torch::Tensor operator()(const torch::Tensor& images,
                                         const torch::Tensor& text_embeddings) const;

 private:
  const Clip& clip_;
  ClipResize resize_;
  ClipInput input_;
  torch::Tensor mean_, std_;
};

/// Σ (a − b)² over all but the batch dimension: [N].
torch::Tensor latent_l2(const torch::Tensor& a, const torch::Tensor& b);
/// The same summed over a list of per-layer tensors (style space).
torch::Tensor latent_l2(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b);

class IdentityLoss {
 public:
  /// `reference_images` [N, 3, H, W]: x₀, whose features are computed once (no gradient).
  IdentityLoss(const IdentityModel& model, const torch::Tensor& reference_images);
  /// Cosine similarity of each image with its reference: [N].
  [[nodiscard]] torch::Tensor similarity(const torch::Tensor& images) const;
  /// 1 − similarity: [N].
  [[nodiscard]] torch::Tensor operator()(const torch::Tensor& images) const {
    return 1.0 - similarity(images);
  }

 private:
  const IdentityModel& model_;
  torch::Tensor reference_;  // [N, D]
};

}  // namespace styleclip
