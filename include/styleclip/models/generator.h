// styleclip/models/generator.h — the bundle's generator (TorchScript) behind a C++ API.
//
// Wraps `generator.pt` as written by scripts/export_bundle.py (StyleGAN2 in rosinality's
// architecture, docs/algorithms.md §8, or StyleGAN3, docs/stylegan3.md; both export the same
// methods, and GeneratorInfo says how their W+ rows and style layers are laid out): mapping z → w
// (with a class label for a conditional generator: the module's `mapping_conditional`), truncation
// toward w_avg, W → W+ broadcast, W+ → style space S (StyleSpace order, docs/algorithms.md §3.1),
// and synthesis from W+ or S. Construction checks the module's methods and runs mapping and styles
// once on the device to check every shape against the manifest. Every method but
// set_input_transform is const and safe to call from one thread at a time; the module is frozen
// (no parameter requires grad), but inputs that require grad get gradients through it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include <styleclip/models/bundle.h>

namespace styleclip {

class Generator {
 public:
  Generator(const Bundle& bundle, torch::Device device);

  /// A private copy of `base` (its own module: nothing is shared) with the named parameters in
  /// `weights` replaced, e.g. a pivotal-tuning result (engines/pti.h). Empty `weights`: an exact
  /// copy, for tuning. Throws an input error naming `what` for an unknown name or a shape that
  /// does not match.
  Generator(const Generator& base, const std::map<std::string, torch::Tensor>& weights,
            const std::string& what = "tuned weights");
  /// The module's parameters by name, live (for tuning a private copy; the mapping network's
  /// are included and get no gradient from W+ inputs).
  [[nodiscard]] std::vector<std::pair<std::string, torch::Tensor>> parameters() const;

  [[nodiscard]] const GeneratorInfo& info() const { return info_; }
  [[nodiscard]] torch::Device device() const { return device_; }
  /// The truncation centre [w_dim] (the checkpoint's latent_avg).
  [[nodiscard]] const torch::Tensor& w_avg() const { return w_avg_; }

  /// The latent z for a seed, [z_dim] fp32, drawn as the bundle's seed convention says: for
  /// "torch" the same numbers as `torch.manual_seed(seed); torch.randn(z_dim)` in Python, for
  /// "numpy-randomstate" `np.random.RandomState(seed).randn(z_dim)` cast to float32 (NVIDIA's
  /// generate.py). Throws an input error for a numpy seed above 2^32 − 1, which numpy refuses.
  [[nodiscard]] torch::Tensor seed_z(uint64_t seed) const;

  /// Whether the mapping needs a class label (info().c_dim > 0).
  [[nodiscard]] bool conditional() const { return info_.c_dim > 0; }
  /// The label rows [batch, c_dim] on the device for class `class_index`: one-hot, fp32
  /// (`c[:, N] = 1`, as NVIDIA's generate.py builds it); undefined for nullopt (an
  /// unconditional generator's "no label"). Throws an input error when the class is out of range
  /// or the generator is unconditional.
  [[nodiscard]] torch::Tensor class_label(std::optional<int64_t> class_index, int64_t batch) const;

  /// z [B, z_dim] → w [B, w_dim]. A conditional generator needs its label c [B, c_dim]
  /// (class_label); an unconditional one takes none (c undefined). Input error otherwise.
  [[nodiscard]] torch::Tensor mapping(const torch::Tensor& z, const torch::Tensor& c = {}) const;
  /// w' = w_avg + psi·(w − w_avg), for [B, w_dim] or [B, num_ws, w_dim].
  [[nodiscard]] torch::Tensor truncate(const torch::Tensor& w, double psi) const;
  /// [B, w_dim] → [B, num_ws, w_dim].
  [[nodiscard]] torch::Tensor broadcast(const torch::Tensor& w) const;

  /// W+ [B, num_ws, w_dim] → S, one [B, C_l] tensor per style layer.
  [[nodiscard]] std::vector<torch::Tensor> styles(const torch::Tensor& ws) const;
  /// W+ → image [B, 3, R, R], raw generator output (about [-1, 1], unclamped).
  [[nodiscard]] torch::Tensor synthesis(const torch::Tensor& ws,
                                        bool randomize_noise = false) const;
  /// S → image.
  [[nodiscard]] torch::Tensor synthesis_from_styles(const std::vector<torch::Tensor>& styles,
                                                    bool randomize_noise = false) const;

  /// Whether the module exports `synthesis_prefix`/`synthesis_suffix` (bundles exported since
  /// they were added; older ones still work, without the reuse).
  [[nodiscard]] bool has_prefix_synthesis() const;
  /// The main-branch conv (`convs[i]`) that style layer `layer` modulates, or -1 for conv1 and the
  /// toRGB layers (nothing before them worth reusing).
  [[nodiscard]] int64_t conv_index_of_layer(int64_t layer) const;
  /// Fixed-noise synthesis split at `convs[upto]`: the prefix holds the activations that do not
  /// depend on the style layers of convs[upto] and after; the suffix finishes the image from
  /// them with `styles` (which may differ in those layers and in every toRGB layer). A prefix's
  /// tensors may be gathered along the batch (index_select) before the suffix.
  [[nodiscard]] std::vector<torch::Tensor> synthesis_prefix(
      const std::vector<torch::Tensor>& styles, int64_t upto) const;
  [[nodiscard]] torch::Tensor synthesis_suffix(const std::vector<torch::Tensor>& prefix,
                                               int64_t upto,
                                               const std::vector<torch::Tensor>& styles) const;

  /// StyleGAN3's input transform as NVIDIA's gen_images.py sets it (`--translate X,Y --rotate
  /// DEG`): every later render is moved by (x, y) (about the picture's width per unit) and
  /// turned by `degrees`. All zero restores the checkpoint's own view. Usage error naming
  /// --translate/--rotate for a StyleGAN2 generator, which has no such input.
  void set_input_transform(double x, double y, double degrees);
  /// The matrix set_input_transform stores in the input layer: the inverse of
  /// [[cos a, sin a, x], [−sin a, cos a, y], [0, 0, 1]] (a in degrees), fp32 [3, 3].
  static torch::Tensor input_transform_matrix(double x, double y, double degrees);
  /// The input layer's transform now (StyleGAN3; undefined for StyleGAN2).
  [[nodiscard]] torch::Tensor input_transform() const;

  /// Throws an input error unless `ws` is [B, num_ws, w_dim] (B ≥ 1). `what` names the input.
  void check_wplus(const torch::Tensor& ws, const std::string& what) const;
  /// Throws an input error unless `s` holds one [B, C_l] tensor per style layer (B ≥ 1, equal).
  void check_styles(const std::vector<torch::Tensor>& s, const std::string& what) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  GeneratorInfo info_;
  torch::Device device_;
  torch::Tensor w_avg_;
};

}  // namespace styleclip
