// styleclip/engines/optimize.h — engine 1: text-guided latent optimisation (docs/algorithms.md §1).
//
// Adam on W+ (or on the non-toRGB style tensors of S) against
//   1 − cos(CLIP(G(w)), CLIP(text)) + λ_L2·Σ(w − w₀)² + λ_ID·(1 − ⟨ArcFace(G(w)), ArcFace(G(w₀))⟩)
// with the reference's learning-rate schedule (`get_lr`: 5 % warm-up, cosine ramp-down over the
// last 25 %, lr = 0 at step 0 while Adam's moments still update). In free mode only the CLIP term
// counts. A batch of inputs is optimised together; each row has its own loss (the total is their
// sum, and Adam is element-wise), so results equal one-at-a-time runs. A row whose loss becomes
// NaN/Inf is stopped at its last finite latent and reported; the others go on.
// The engine takes tensors and options and returns tensors and metrics: no files, no flags.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/engine.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>

namespace styleclip {

enum class LatentSpace { kWPlus, kS };

struct OptimizeOptions {
  int steps = 300;           ///< Adam steps (reference: 300; its Colab: 40)
  double lr = 0.1;           ///< peak learning rate
  double l2_lambda = 0.008;  ///< weight of Σ(w − w₀)² (edit mode)
  double id_lambda = 0.0;    ///< weight of the identity term (needs an identity model)
  LatentSpace space = LatentSpace::kWPlus;
  bool free_mode = false;  ///< CLIP term only (the reference's free_generation)
  ClipInput clip_input = ClipInput::kRaw;
  int frame_every = 0;  ///< keep an image every K steps (0: none)
  /// The models' arithmetic (autocast scope around the loop); latents and Adam's state stay fp32.
  Precision precision = Precision::kFp32;
  /// CUDA only: capture one step as a CUDA graph after a few eager warm-up steps and replay it
  /// for the rest (same arithmetic, far fewer kernel launches). A usage error on the CPU.
  bool cuda_graph = false;

  [[nodiscard]] nlohmann::json to_json() const;
};

/// Whether this build can capture CUDA graphs (built against a CUDA LibTorch with c10_cuda).
bool cuda_graphs_built();
/// Throws (usage error on a CPU device, device error in a build without CUDA graph support)
/// when `cuda_graph` is asked for and cannot be had; `optimize` checks too.
void check_cuda_graph(const OptimizeOptions& options, const torch::Device& device);

/// The reference's `get_lr(t, initial_lr, rampdown=0.25, rampup=0.05)` with t = step / steps.
double optimize_lr(int step, int steps, double lr);

/// Per input row.
struct OptimizeRowResult {
  bool ok = true;
  std::string error;  ///< why the row stopped (NaN/Inf), when !ok
  int steps_done = 0;
  double clip_before = 0;          ///< cosine similarity with the text, start image
  double clip_after = 0;           ///< … final image
  std::optional<double> identity;  ///< ArcFace cosine final vs start, when a model is given
  double loss = 0, loss_clip = 0, loss_l2 = 0,
         loss_id = 0;  ///< final terms (weighted total and raw parts)
};

struct OptimizeResult {
  torch::Tensor ws;                   ///< [N, num_ws, w_dim] final W+ (W+ mode; else the start)
  std::vector<torch::Tensor> styles;  ///< final S, one [N, C] per layer
  torch::Tensor images_before;        ///< [N, 3, R, R]
  torch::Tensor images_after;         ///< [N, 3, R, R], rendered from the final latent
  std::vector<OptimizeRowResult> rows;
  double seconds = 0;
  double steps_per_second = 0;
  bool stopped = false;  ///< `should_stop` ended the loop early
};

/// Hooks the caller may set: progress after every step (steps done, total, mean loss of the
/// active rows), and every `frame_every` steps the images of that step (before its update, as
/// the reference saves them) so they can be written out instead of held in memory. The frame
/// tensor is overwritten by the next step: copy it to keep it.
struct OptimizeCallbacks {
  std::function<void(int, int, double)> progress;
  std::function<void(int, const torch::Tensor&)> frame;
  /// Asked before every step; true stops the loop (the result has `stopped` set and its
  /// latents are those of the last completed step). For Ctrl-C in batch runs.
  std::function<bool()> should_stop;
};

/// Throws a usage error naming the option when `options` are invalid (`optimize` checks too).
void validate(const OptimizeOptions& options, bool has_identity_model);

/// Optimises the rows of `ws0` [N, num_ws, w_dim] toward `text` [1 or N, D] (CLIP text embeddings).
/// `identity` may be null (then id_lambda must be 0). Throws a usage error for invalid options.
OptimizeResult optimize(const Generator& gen, const Clip& clip, const IdentityModel* identity,
                        const torch::Tensor& ws0, const torch::Tensor& text,
                        const OptimizeOptions& options, const OptimizeCallbacks& callbacks = {});

/// The same in S from style codes `s0` (per style layer [N, C_l], e.g. a global edit's
/// `.styles.pt`): `options.space` must be S. The result's `ws` is undefined.
OptimizeResult optimize_styles(const Generator& gen, const Clip& clip,
                               const IdentityModel* identity, const std::vector<torch::Tensor>& s0,
                               const torch::Tensor& text, const OptimizeOptions& options,
                               const OptimizeCallbacks& callbacks = {});

/// This engine behind the Engine interface (latent optimisation), for the registry.
EngineInfo optimize_engine();

}  // namespace styleclip
