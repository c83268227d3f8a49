// styleclip/engines/mapper.h — engine 2: latent mappers (StyleCLIP paper, section 5;
// docs/algorithms.md §2).
//
// A mapper M_t is a small network trained for one prompt t that predicts a W+ step:
//   w' = w + strength·M(w)          (the reference's hard-coded 0.1 is the default strength)
// `LevelsMapper` is the reference's `mapper/latent_mappers.py` LevelsMapper for any generator:
// W+ rows 0–3 (coarse), 4–7 (medium) and 8–end (fine) each go through their own PixelNorm +
// 4 × EqualLinear (lr_mul 0.01, fused leaky ReLU). A group that is switched off outputs zeros; a
// group with no rows (a small generator) does not exist. Parameter names are the published
// checkpoint's without its `mapper.` prefix, spelling included: `course_mapping.mapping.1.weight`.
//
// Training: `mapper_train_step` is one step of the reference's coach (`mapper/training/coach.py`):
//   λ_CLIP·mean(1 − cos) + λ_L2·mean((w' − w)²) + λ_ID·mean(1 − ⟨ArcFace(G(w')), ArcFace(G(w))⟩)
// with the reference's optimiser, `Ranger` (RAdam + Lookahead + gradient centralisation), or Adam.
// Both are `torch::optim::Optimizer`s, so `torch::save(optimizer, …)` / `torch::load` keep their
// state for resuming (see save_optimizer_state).
//
// Mapper files (`save_mapper` / `load_mapper`) are `torch.save`-compatible dicts; the Python
// importer scripts/styleclip_export/mapper.py writes the same layout from StyleCLIP's checkpoints.
// Nothing here is thread-safe: one mapper and one optimiser per thread.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/engine.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>

namespace styleclip {

/// Which of the three row groups a mapper edits (the reference's --no_{coarse,medium,fine}_mapper).
struct MapperGroups {
  bool coarse = true;  ///< W+ rows 0–3
  bool medium = true;  ///< W+ rows 4–7
  bool fine = true;    ///< W+ rows 8 to the end

  [[nodiscard]] bool enabled(int group) const;
  /// The enabled groups by name: ["coarse", "medium", "fine"].
  [[nodiscard]] nlohmann::json to_json() const;
  /// From a list of names; usage error naming an unknown one.
  static MapperGroups from_names(const std::vector<std::string>& names);
};

/// Group names in row order, and the module names the reference gives them (`course` sic).
inline constexpr std::array<const char*, 3> kMapperGroupNames = {"coarse", "medium", "fine"};
inline constexpr std::array<const char*, 3> kMapperModuleNames = {"course_mapping",
                                                                  "medium_mapping", "fine_mapping"};

/// W+ rows [first, second) of group 0, 1 or 2 for a generator with `num_ws` rows; empty
/// (first == second) when the generator has too few rows.
std::pair<int64_t, int64_t> mapper_group_rows(int group, int64_t num_ws);

/// What PixelNorm normalises over in each group's input [B, rows, w_dim].
enum class PixelNormMode {
  kRows,  ///< over the group's W+ rows (dim 1): the reference's behaviour, needed by its mappers
  kFeatures,  ///< over the w_dim features (dim 2): what PixelNorm means in StyleGAN
};
std::string to_string(PixelNormMode m);
/// "rows" or "features"; usage error otherwise.
PixelNormMode parse_pixel_norm(const std::string& s);

struct LevelsMapperOptions {
  int64_t num_ws = 18;  ///< W+ rows of the generator
  int64_t w_dim = 512;  ///< W width of the generator
  MapperGroups groups;
  PixelNormMode pixel_norm = PixelNormMode::kRows;
  uint64_t seed = 0;  ///< initial weights (randn / lr_mul, bias 0, as the reference) from this seed
  /// The generator family the mapper was trained for ("stylegan2", "stylegan3"): rows of the same
  /// number mean different things in each (docs/stylegan3.md).
  std::string generator_family = "stylegan2";

  [[nodiscard]] nlohmann::json to_json() const;
};

/// StyleGAN2's equalised linear layer with the fused leaky ReLU (rosinality's EqualLinear with
/// activation='fused_lrelu'): leaky_relu(x·(W·lr_mul/√in)ᵀ + b·lr_mul, 0.2)·√2 on the last dim.
class EqualLinearImpl : public torch::nn::Module {
 public:
  EqualLinearImpl(int64_t in, int64_t out, double lr_mul, at::Generator& rng);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::Tensor weight_;  // [out, in], stored as randn / lr_mul
  torch::Tensor bias_;    // [out]
  double scale_;
  double lr_mul_;
};
TORCH_MODULE(EqualLinear);

/// One group's network (the reference's `Mapper`): PixelNorm, then 4 EqualLinear layers named
/// `mapping.1` … `mapping.4` (index 0 is the parameter-free PixelNorm, as in the reference).
class GroupMapperImpl : public torch::nn::Module {
 public:
  GroupMapperImpl(int64_t w_dim, PixelNormMode mode, at::Generator& rng);
  /// [B, rows, w_dim] → [B, rows, w_dim].
  torch::Tensor forward(const torch::Tensor& x);

 private:
  PixelNormMode mode_;
  std::vector<EqualLinear> layers_;
};
TORCH_MODULE(GroupMapper);

class LevelsMapperImpl : public torch::nn::Module {
 public:
  explicit LevelsMapperImpl(const LevelsMapperOptions& options);

  /// M(w): [B, num_ws, w_dim] → [B, num_ws, w_dim]; rows of a switched-off group are zero.
  /// Input error unless `w` has that shape.
  torch::Tensor forward(const torch::Tensor& w);
  /// w + strength·M(w), the reference's edit (coach.py L88, inference.py L98).
  torch::Tensor apply(const torch::Tensor& w, double strength = 0.1);
  using torch::nn::Module::apply;

  [[nodiscard]] const LevelsMapperOptions& options() const { return options_; }

 private:
  LevelsMapperOptions options_;
  std::array<GroupMapper, 3> groups_{nullptr, nullptr, nullptr};  // null: off or no rows
};
TORCH_MODULE(LevelsMapper);

/// A mapper file's contents.
struct MapperFile {
  LevelsMapper mapper{nullptr};
  double strength = 0.1;  ///< the strength it was trained with
  nlohmann::json meta;    ///< what the writer recorded (prompt, generator, history, source)
};

/// Writes `mapper` as a `torch.save`-compatible dict, atomically:
///   {"format": "styleclip-mapper", "version": 1, "num_ws": int, "w_dim": int,
///    "groups": [names], "pixel_norm": "rows"|"features", "strength": float,
///    "state_dict": {parameter name: tensor}, "meta": JSON string,
///    "generator_family": "stylegan2"|"stylegan3" (absent: stylegan2, as StyleCLIP's own)}
void save_mapper(const std::filesystem::path& path, const LevelsMapper& mapper,
                 const nlohmann::json& meta, double strength = 0.1);

/// Reads a mapper file for a generator of `family` with `num_ws` rows of width `w_dim`, onto
/// `device`. Throws a bundle error (exit code 3: a model that does not fit) naming the file for
/// a missing, unreadable or foreign file, missing/unexpected/misshapen tensors, or a generator
/// mismatch (a StyleGAN2 mapper, StyleCLIP's published ones included, on StyleGAN3 or back).
MapperFile load_mapper(const std::filesystem::path& path, int64_t num_ws, int64_t w_dim,
                       torch::Device device = torch::kCPU, const std::string& family = "stylegan2");

// --- Ranger ------------------------------------------------------------------------------------

/// Ranger v20.4.11 as StyleCLIP ships it (`mapper/training/ranger.py`, from
/// lessw2020/Ranger-Deep-Learning-Optimizer). Defaults are the reference's.
struct RangerOptions : public torch::optim::OptimizerCloneableOptions<RangerOptions> {
  RangerOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor): LibTorch's convention
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, alpha) = 0.5;          ///< Lookahead: slow += alpha·(fast − slow)
  TORCH_ARG(int64_t, k) = 6;               ///< Lookahead: sync every k steps
  TORCH_ARG(double, n_sma_threshold) = 5;  ///< RAdam: rectify once N_sma exceeds this
  using betas_t = std::tuple<double, double>;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.95, 0.999);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(double, weight_decay) = 0;
  TORCH_ARG(bool, use_gc) = true;         ///< gradient centralisation
  TORCH_ARG(bool, gc_conv_only) = false;  ///< GC only for dim > 3 (convolutions), else dim > 1

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  [[nodiscard]] double get_lr() const override;
  void set_lr(double lr) override;
};

struct RangerParamState : public torch::optim::OptimizerCloneableParamState<RangerParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_avg_sq);
  TORCH_ARG(torch::Tensor, slow_buffer);  ///< Lookahead's slow weights

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

/// RAdam + Lookahead + gradient centralisation. Per parameter and step t (β = betas):
///   g ← g − mean(g over all dims but the first)                (GC, for tensors with dim > 1)
///   v ← β₂v + (1−β₂)g²;  m ← β₁m + (1−β₁)g
///   N∞ = 2/(1−β₂) − 1;   N_t = N∞ − 2tβ₂ᵗ/(1−β₂ᵗ)
///   N_t > 5: p ← p − lr·√((1−β₂ᵗ)(N_t−4)(N_t−2)N∞ / ((N∞−4)N_t(N∞−2))) / (1−β₁ᵗ) · m/(√v + eps)
///   else:    p ← p − lr/(1−β₁ᵗ) · m
///   t % k = 0: slow ← slow + α(p − slow); p ← slow     (slow starts as p before the first step)
/// Half-precision parameters are updated in float32, as the reference does.
class Ranger : public torch::optim::Optimizer {
 public:
  explicit Ranger(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                  RangerOptions defaults = {});
  explicit Ranger(std::vector<torch::Tensor> params, RangerOptions defaults = {})
      : Ranger({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

/// The key LibTorch's optimisers file a parameter's state under (what `torch::optim::serialize`
/// looks up again): the TensorImpl's address as text in LibTorch 1.x, the address itself in 2.x.
template <typename StateMap>
typename StateMap::key_type optimizer_state_key(const torch::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << static_cast<const void*>(p.unsafeGetTensorImpl());  // c10::guts::to_string's format
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

/// An optimiser's state (Ranger, Adam, …) to a file as `torch::save` writes it, atomically; and
/// back into an optimiser built over the same parameters (input error naming the file).
void save_optimizer_state(const std::filesystem::path& path,
                          const torch::optim::Optimizer& optimizer);
void load_optimizer_state(const std::filesystem::path& path, torch::optim::Optimizer& optimizer);

// --- training ----------------------------------------------------------------------------------

/// Per training run (docs/algorithms.md §2.3; defaults are the reference's train_options.py).
struct MapperTrainOptions {
  double clip_lambda = 1.0;  ///< weight of mean(1 − cos(CLIP(G(w')), text))
  double l2_lambda = 0.8;    ///< weight of mean((w' − w)²) (nn.MSELoss: a mean, not a sum)
  double id_lambda = 0.1;    ///< weight of mean(1 − identity similarity); needs an identity model
  double lr = 0.5;
  double strength = 0.1;  ///< w' = w + strength·M(w)
  MapperGroups groups;
  std::string optimizer = "ranger";  ///< "ranger" or "adam" (PyTorch's defaults but lr)
  int64_t batch = 2;
  uint64_t seed = 0;  ///< initial weights and batch order
  /// The arithmetic of the generator's, CLIP's and the mapper's forward passes; the mapper's
  /// weights and the optimiser's state stay fp32.
  Precision precision = Precision::kFp32;

  [[nodiscard]] nlohmann::json to_json() const;
};

/// Throws a usage error naming the option when `options` are invalid.
void validate(const MapperTrainOptions& options, bool has_identity_model);

/// The optimiser `options.optimizer` names, over the mapper's parameters, with `options.lr`.
std::unique_ptr<torch::optim::Optimizer> make_mapper_optimizer(LevelsMapper& mapper,
                                                               const MapperTrainOptions& options);

/// The batch's losses before the step: the weighted total and the raw (unweighted) terms.
struct MapperStepLosses {
  double loss = 0;
  double clip = 0;  ///< mean over the batch of 1 − cos
  double l2 = 0;    ///< mean of (w' − w)²
  double id = 0;    ///< mean over the batch of 1 − identity similarity (0 when not computed)
};

/// One optimisation step on the batch `w` [B, num_ws, w_dim] toward `text` [1 or B, D]: zero
/// the gradients, render G(w') with fixed noise, the loss above, backward, `optimizer.step()`.
/// `identity` may be null when id_lambda is 0; otherwise the identity reference is G(w) of this
/// batch. Usage error for invalid options; input error for a wrongly shaped batch.
MapperStepLosses mapper_train_step(LevelsMapper& mapper, torch::optim::Optimizer& optimizer,
                                   const Generator& gen, const ClipLoss& clip_loss,
                                   const IdentityModel* identity, const torch::Tensor& text,
                                   const torch::Tensor& w, const MapperTrainOptions& options);

/// This engine behind the Engine interface (a trained mapper applied to latents), for the registry.
EngineInfo mapper_engine();

}  // namespace styleclip
