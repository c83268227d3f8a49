// styleclip/engines/global_directions.h — engine 3: global directions in style space S
// (StyleCLIP paper, section 6; docs/algorithms.md §3.2–3.5).
//
// Prepare once per generator: per-channel mean/std of S over sampled W (truncation 0.7), and for
// each channel c of the chosen layers the CLIP direction Δi_c: set c to mean ± 5σ on each of the
// sample images, embed both renders with CLIP's full preprocessing, normalise, difference,
// normalise, average over images, normalise (the reference's `fs3`). Many (channel, sign, image)
// renders go through the generator per call.
// Edit: Δt from target/neutral texts (79 templates), relevance r = Δi_c·Δt, keep |r| ≥ β, divide
// by max |r|, scale by each channel's std, add α·Δs to S. No NaN when nothing passes β: the edit
// is then empty and `channels` is 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/engine.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/runtime.h>

namespace styleclip {

/// CLIP's 80 ImageNet prompt templates without 'a photo of many {}.', as StyleCLIP uses them.
const std::vector<std::string>& imagenet_templates();

/// What `global prepare` writes (global_stats.pt).
struct GlobalStats {
  std::vector<int64_t> layers;        ///< style layers that have directions, ascending
  std::vector<torch::Tensor> s_mean;  ///< per style layer (all layers) [C_l]
  std::vector<torch::Tensor> s_std;   ///< per style layer (all layers) [C_l]
  torch::Tensor directions;           ///< [Σ C over `layers`, D] unit vectors (fs3)
  nlohmann::json meta;                ///< how it was made

  /// Offset of each direction layer's first row in `directions`.
  [[nodiscard]] std::vector<int64_t> offsets(const GeneratorInfo& info) const;
  /// Writes a `torch.save`-compatible dict; atomic.
  void save(const std::filesystem::path& path) const;
  /// Reads and checks against the generator's layout; bundle error naming the file otherwise.
  /// `partial`: a checkpoint of an unfinished preparation (fewer direction rows).
  static GlobalStats load(const std::filesystem::path& path, const GeneratorInfo& info,
                          bool partial = false);
};

/// The reference's default layers: style-channel layers (not toRGB, not StyleGAN3's input
/// transform) at 128 px or below (GeneratorInfo::style_resolutions).
std::vector<int64_t> default_global_layers(const GeneratorInfo& info);

struct PrepareOptions {
  int64_t samples = 100000;     ///< W samples for the mean/std (reference: 100,000)
  int64_t images = 100;         ///< sample images per channel (reference: 100)
  std::vector<int64_t> layers;  ///< empty: default_global_layers
  uint64_t seed = 5;            ///< the reference samples with RandomState(5)
  double truncation = 0.7;
  /// The class of the sampled W, for a conditional generator (statistics are per class); nullopt
  /// for an unconditional one.
  std::optional<int64_t> class_index;
  double sigma = 5.0;  ///< perturbation in standard deviations
  int64_t batch = 64;  ///< renders per generator call
  /// Reuse the layers before the perturbed one (computed once per sample image) when the
  /// generator exports `synthesis_prefix` and the cached activations fit in this many MiB;
  /// 0 turns the reuse off. The result is the same either way (tested to 1e-5).
  int64_t prefix_cache_mib = 2048;
  /// The arithmetic of the channel renders and their CLIP encodings (the statistics of S stay
  /// fp32: they are cheap and every direction is measured against them).
  Precision precision = Precision::kFp32;

  [[nodiscard]] nlohmann::json to_json() const;
};

/// Per-channel mean and std (ddof 0) of S over `samples` W codes, and the first `images` S codes.
struct StyleStatistics {
  std::vector<torch::Tensor> mean, std;
  std::vector<torch::Tensor> sample_styles;  ///< per layer [images, C_l]
};
StyleStatistics style_statistics(const Generator& gen, const PrepareOptions& options);

/// CLIP's photo preprocessing of generator images, batched on the device: [-1, 1] → 8-bit
/// values (as the reference saves uint8 images) → antialiased bicubic resize → mean/std.
torch::Tensor clip_pixels_from_generated(const Clip& clip, const torch::Tensor& images);

/// Δi_c for channels [begin, end) of style layer `layer`: [end − begin, D] unit vectors.
torch::Tensor channel_directions(const Generator& gen, const Clip& clip,
                                 const StyleStatistics& stats, int64_t layer, int64_t begin,
                                 int64_t end, const PrepareOptions& options);

/// Δt = norm(mean(norm(E(target)))) − norm(mean(norm(E(neutral)))), normalised; each text
/// expanded with the 79 templates unless `templates` is false.
torch::Tensor text_direction(const Clip& clip, const std::string& target,
                             const std::string& neutral, bool templates = true);
/// The same from two image embeddings' directions (unnormalised embeddings in).
torch::Tensor embedding_direction(const torch::Tensor& target, const torch::Tensor& neutral);

struct GlobalEdit {
  std::vector<torch::Tensor>
      delta;                 ///< Δs per style layer [C_l] (zero outside the direction layers)
  int64_t channels = 0;      ///< how many channels passed β
  double max_relevance = 0;  ///< max |r| over all channels
};

/// Δs for direction `dt` [D] with threshold `beta` (unscaled by α).
GlobalEdit global_delta(const GlobalStats& stats, const GeneratorInfo& info,
                        const torch::Tensor& dt, double beta);
/// The reference UI's automatic β: the largest of 0.10, 0.11, …, 0.29 that keeps more than
/// `min_channels` channels, else 0.10.
double auto_threshold(const GlobalStats& stats, const GeneratorInfo& info, const torch::Tensor& dt,
                      int64_t min_channels = 20);
/// s + α·Δs for every layer (styles [N, C_l]).
std::vector<torch::Tensor> apply_delta(const std::vector<torch::Tensor>& styles,
                                       const GlobalEdit& edit, double alpha);

/// This engine behind the Engine interface (global style-space directions), for the registry.
EngineInfo global_engine();

}  // namespace styleclip
