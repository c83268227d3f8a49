// styleclip/engines/pti.h — Pivotal Tuning Inversion (Roich et al. 2021, "Pivotal Tuning for
// Latent-based Editing of Real Images", section 3): the generator's weights tuned around one
// photo's inverted code (the pivot), so that the pivot renders the photo itself, not a
// look-alike, and edits of it stay in the generator's latent space.
//
// Adam (lr 3e-4, the paper's) on every parameter of a private copy of the generator, for `steps`
// (the paper's 350) against λ_lpips·LPIPS(G(w_p), x) + λ_l2·mean((G(w_p) − x)²) with the pivot
// w_p fixed. The mapping network gets no gradient from a W+ pivot, so it stays as it was; the
// result lists only the tensors that changed. The paper's optional locality regulariser is not
// implemented (its Table 3 shows it matters for edits far from the pivot).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/models/generator.h>
#include <styleclip/models/lpips.h>

namespace styleclip {

struct PtiOptions {
  int steps = 350;            ///< the paper's
  double lr = 3e-4;           ///< the paper's
  double lpips_lambda = 1.0;  ///< weight of LPIPS (when the bundle has it)
  double l2_lambda = 1.0;     ///< weight of the mean squared pixel error (images in [-1, 1])
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Throws a usage error naming the option when `options` are invalid.
void validate(const PtiOptions& options);

struct PtiResult {
  std::map<std::string, torch::Tensor> weights;  ///< the changed parameters, on the CPU
  torch::Tensor image_pivot;                     ///< [1, 3, R, R], the pivot before tuning
  torch::Tensor image_tuned;                     ///< … after
  double psnr_pivot = 0, psnr_tuned = 0;         ///< dB against the target
  double lpips_pivot = -1, lpips_tuned = -1;     ///< −1 without an LPIPS model
  double final_loss = 0;
  double seconds = 0;
};

/// Tunes a copy of `gen` (never `gen` itself) so that `pivot` [1, num_ws, w_dim] renders `target`
/// [1, 3, R, R] in [-1, 1]. `lpips` may be null (then the L2 term alone, with a warning from
/// the caller). `progress(step, total, loss)` after every step; it may throw to abandon.
PtiResult pivotal_tuning(const Generator& gen, const Lpips* lpips, const torch::Tensor& target,
                         const torch::Tensor& pivot, const PtiOptions& options,
                         const std::function<void(int, int, double)>& progress = {});

/// Writes tuned weights as a `torch.save`-compatible dict {name: tensor} (atomically); reads them
/// back (input error naming the file when it is not such a dict).
void save_weights(const std::filesystem::path& path,
                  const std::map<std::string, torch::Tensor>& weights);
std::map<std::string, torch::Tensor> load_weights(const std::filesystem::path& path);

}  // namespace styleclip
