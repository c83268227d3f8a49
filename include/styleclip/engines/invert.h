// styleclip/engines/invert.h — inversion by optimisation: the W+ code whose image matches a given
// image ("--with optimize"; a projector in the spirit of StyleGAN2's).
//
// Adam on W+ from the generator's w_avg (or a given start, e.g. an encoder's answer) against
//   λ_pix·mean((G(w) − x)²) + λ_clip·(1 − cos(CLIP(G(w)), CLIP(x)))
// per row, with engine 1's learning-rate schedule (5 % warm-up, cosine ramp-down over the last
// 25 %). The CLIP term is the perceptual loss when the bundle has no LPIPS network (none is
// exported yet); it compares image features, not text. Rows are independent (the total is their
// sum, Adam is element-wise). Fixed noise, so the result renders the same every time.
#pragma once

#include <functional>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/losses/losses.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/lpips.h>
#include <styleclip/runtime.h>

namespace styleclip {

struct InvertOptions {
  int steps = 300;
  double lr = 0.1;
  double pixel_lambda = 1.0;  ///< weight of the mean squared pixel error (images in [-1, 1])
  double clip_lambda = 0.5;   ///< weight of 1 − cos of the CLIP image features (0: off)
  double lpips_lambda = 1.0;  ///< weight of LPIPS, used instead of CLIP when a model is given
  Precision precision = Precision::kFp32;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Throws a usage error naming the option when `options` are invalid.
void validate(const InvertOptions& options);

struct InvertResult {
  torch::Tensor ws;                             ///< [N, num_ws, w_dim]
  torch::Tensor images;                         ///< [N, 3, R, R], G(ws)
  std::vector<double> psnr_before, psnr_after;  ///< dB against the target, per row (start, end)
  /// Mean loss per row where it was read: every step with a progress callback, else every 10th
  /// step and the last (reading it waits for a GPU).
  std::vector<double> loss_history;
  double seconds = 0;
};

/// PSNR in dB of images in [-1, 1] against targets, per row (peak-to-peak 2).
torch::Tensor psnr(const torch::Tensor& images, const torch::Tensor& targets);

/// Inverts `targets` [N, 3, R, R] in [-1, 1] at the generator's resolution. `start` [N, num_ws,
/// w_dim] or undefined (w_avg). `clip` may be null when clip_lambda is 0. `progress(step, total,
/// mean loss)` after every step.
InvertResult invert(const Generator& gen, const Clip* clip, const torch::Tensor& targets,
                    const torch::Tensor& start, const InvertOptions& options,
                    const std::function<void(int, int, double)>& progress = {});

/// The same with LPIPS as the perceptual term (λ_lpips·LPIPS(G(w), x) instead of the CLIP term)
/// when `lpips` is not null: LPIPS-VGG whenever the bundle has one.
InvertResult invert(const Generator& gen, const Clip* clip, const Lpips* lpips,
                    const torch::Tensor& targets, const torch::Tensor& start,
                    const InvertOptions& options,
                    const std::function<void(int, int, double)>& progress = {});

}  // namespace styleclip
