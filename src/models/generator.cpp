#include <styleclip/error.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/numpy_random.h>
#include <styleclip/runtime.h>
#include "script_module.h"

#include <cmath>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

namespace styleclip {

namespace {

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace

struct Generator::Impl {
  torch::jit::Module module;
  std::string path;
};

Generator::Generator(const Bundle& bundle, torch::Device device)
    : impl_(std::make_shared<Impl>()), info_(bundle.generator()), device_(device) {
  const auto path = bundle.file("generator");
  impl_->path = path.string();
  impl_->module = load_script_module(path, device, "generator",
                                     {"mapping", "styles", "synthesis", "synthesis_from_styles"},
                                     "re-export it with scripts/export_bundle.py --stylegan CKPT");
  if (conditional() && !impl_->module.find_method("mapping_conditional")) {
    throw bundle_error("generator '" + impl_->path +
                       "' has no method 'mapping_conditional', which a " +
                       "conditional generator (c_dim " + std::to_string(info_.c_dim) +
                       " in manifest.json) needs: re-export it with scripts/export_bundle.py");
  }
  if (!impl_->module.hasattr("w_avg")) {
    throw bundle_error("'" + impl_->path + "' is not a styleclip generator: it has no 'w_avg'");
  }
  w_avg_ = impl_->module.attr("w_avg").toTensor();

  // The dry run: cheap calls whose shapes must agree with the manifest.
  torch::NoGradGuard no_grad;
  const auto fail = [&](const std::string& what, const std::string& found,
                        const std::string& expected) {
    throw bundle_error("generator '" + impl_->path + "' does not match manifest.json: " + what +
                       " is " + found + ", expected " + expected + " (re-export the bundle)");
  };
  if (w_avg_.dim() != 1 || w_avg_.size(0) != info_.w_dim) {
    fail("w_avg", shape_str(w_avg_), "[" + std::to_string(info_.w_dim) + "]");
  }
  torch::Tensor w;
  std::vector<torch::Tensor> s;
  try {
    w = mapping(torch::zeros({1, info_.z_dim}, torch::TensorOptions().device(device)),
                conditional() ? class_label(0, 1) : torch::Tensor());
    s = styles(broadcast(w_avg_.unsqueeze(0)));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("a dry run", "an error (" + torch_message(e) + ")", "success");
  }
  if (w.dim() != 2 || w.size(1) != info_.w_dim) {
    fail("mapping output", shape_str(w), "[1, " + std::to_string(info_.w_dim) + "]");
  }
  if (s.size() != info_.style_dims.size()) {
    fail("the number of style layers", std::to_string(s.size()),
         std::to_string(info_.style_dims.size()));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].dim() != 2 || s[i].size(1) != info_.style_dims[i]) {
      fail("style layer " + std::to_string(i), shape_str(s[i]),
           "[1, " + std::to_string(info_.style_dims[i]) + "]");
    }
  }
}

Generator::Generator(const Generator& base, const std::map<std::string, torch::Tensor>& weights,
                     const std::string& what)
    : impl_(std::make_shared<Impl>()), info_(base.info_), device_(base.device_) {
  impl_->path = base.impl_->path;
  impl_->module = base.impl_->module.deepcopy();
  w_avg_ = impl_->module.attr("w_avg").toTensor();
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : impl_->module.named_parameters()) params.emplace(p.name, p.value);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : weights) {
    const auto it = params.find(name);
    if (it == params.end()) {
      throw input_error(what + ": '" + name + "' is not a parameter of generator '" + impl_->path +
                        "'");
    }
    if (!it->second.sizes().equals(t.sizes())) {
      throw input_error(what + ": '" + name + "' has shape " + shape_str(t) + ", the generator's " +
                        shape_str(it->second));
    }
    it->second.copy_(t.to(it->second.device(), it->second.scalar_type()));
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Generator::parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : impl_->module.named_parameters()) out.emplace_back(p.name, p.value);
  return out;
}

torch::Tensor Generator::seed_z(uint64_t seed) const {
  if (info_.seed_convention == SeedConvention::kNumpyRandomState) {
    if (seed > kNumpyMaxSeed) {
      throw input_error("seed " + std::to_string(seed) +
                        " is out of range: this generator draws z as numpy's RandomState, whose "
                        "seeds are 0-" +
                        std::to_string(kNumpyMaxSeed));
    }
    auto z = numpy_randn(static_cast<uint32_t>(seed), info_.z_dim);
    return torch::tensor(z, torch::TensorOptions().dtype(torch::kFloat32)).to(device_);
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn({info_.z_dim}, gen, torch::TensorOptions().dtype(torch::kFloat32))
      .to(device_);
}

torch::Tensor Generator::class_label(std::optional<int64_t> class_index, int64_t batch) const {
  if (!class_index) return {};
  if (!conditional()) {
    throw input_error("class " + std::to_string(*class_index) +
                      " given, but the generator is unconditional (it takes no class)");
  }
  if (*class_index < 0 || *class_index >= info_.c_dim) {
    throw input_error("class " + std::to_string(*class_index) +
                      " is out of range: the generator has " + std::to_string(info_.c_dim) +
                      " classes (0-" + std::to_string(info_.c_dim - 1) + ")");
  }
  auto c = torch::zeros({batch, info_.c_dim}, torch::TensorOptions().dtype(torch::kFloat32));
  c.select(1, *class_index).fill_(1.0);
  return c.to(device_);
}

torch::Tensor Generator::mapping(const torch::Tensor& z, const torch::Tensor& c) const {
  if (z.dim() != 2 || z.size(1) != info_.z_dim) {
    throw input_error("mapping input has shape " + shape_str(z) + ", expected [N, " +
                      std::to_string(info_.z_dim) + "]");
  }
  torch::Tensor w;
  if (conditional()) {
    if (!c.defined() || c.dim() != 2 || c.size(0) != z.size(0) || c.size(1) != info_.c_dim) {
      throw input_error("the generator is conditional: mapping needs a class label of shape [" +
                        std::to_string(z.size(0)) + ", " + std::to_string(info_.c_dim) + "], got " +
                        (c.defined() ? shape_str(c) : std::string("none")));
    }
    w = impl_->module.get_method("mapping_conditional")({z.to(device_), c.to(device_)}).toTensor();
  } else {
    if (c.defined() && c.numel() > 0) {
      throw input_error("the generator is unconditional: mapping takes no class label (got " +
                        shape_str(c) + ")");
    }
    w = impl_->module.get_method("mapping")({z.to(device_)}).toTensor();
  }
  // Outputs go back to fp32 (a no-op without autocast): latents stay fp32 under --precision.
  return w.to(torch::kFloat32);
}

torch::Tensor Generator::truncate(const torch::Tensor& w, double psi) const {
  if (psi == 1.0) return w;
  return w_avg_ + psi * (w - w_avg_);
}

torch::Tensor Generator::broadcast(const torch::Tensor& w) const {
  return w.unsqueeze(1).expand({w.size(0), info_.num_ws, w.size(1)}).contiguous();
}

void Generator::check_wplus(const torch::Tensor& ws, const std::string& what) const {
  if (ws.dim() != 3 || ws.size(0) < 1 || ws.size(1) != info_.num_ws || ws.size(2) != info_.w_dim) {
    throw input_error(what + " has shape " + shape_str(ws) + ", expected [N, " +
                      std::to_string(info_.num_ws) + ", " + std::to_string(info_.w_dim) +
                      "] for this generator");
  }
}

void Generator::check_styles(const std::vector<torch::Tensor>& s, const std::string& what) const {
  bool ok = s.size() == info_.style_dims.size() && !s.empty();
  for (size_t l = 0; ok && l < s.size(); ++l) {
    ok = s[l].dim() == 2 && s[l].size(0) >= 1 && s[l].size(0) == s.front().size(0) &&
         s[l].size(1) == info_.style_dims[l];
  }
  if (!ok) {
    throw input_error(what + " do not match this generator's " +
                      std::to_string(info_.style_dims.size()) +
                      " style layers ([N, C] each, C as in the manifest's style_dims)");
  }
}

std::vector<torch::Tensor> Generator::styles(const torch::Tensor& ws) const {
  check_wplus(ws, "W+ latent");
  auto out = impl_->module.get_method("styles")({ws.to(device_)}).toTensorVector();
  for (auto& t : out) t = t.to(torch::kFloat32);
  return out;
}

torch::Tensor Generator::synthesis(const torch::Tensor& ws, bool randomize_noise) const {
  check_wplus(ws, "W+ latent");
  auto img = impl_->module.get_method("synthesis")({ws.to(device_), randomize_noise})
                 .toTensor()
                 .to(torch::kFloat32);
  TORCH_CHECK(img.dim() == 4 && img.size(1) == 3 && img.size(2) == info_.resolution,
              "generator returned an image of shape ", img.sizes());
  return img;
}

namespace {
c10::List<torch::Tensor> tensor_list(const std::vector<torch::Tensor>& ts, torch::Device device) {
  c10::List<torch::Tensor> list;
  for (const auto& t : ts) list.push_back(t.to(device));
  return list;
}
}  // namespace

bool Generator::has_prefix_synthesis() const {
  return impl_->module.find_method("synthesis_prefix").has_value() &&
         impl_->module.find_method("synthesis_suffix").has_value();
}

int64_t Generator::conv_index_of_layer(int64_t layer) const {
  if (layer < 0 || layer >= static_cast<int64_t>(info_.style_dims.size())) return -1;
  if (info_.family == GeneratorFamily::kStyleGAN3) {
    // Entry 0 is the input transform, entry l ≥ 1 modulates synthesis layer l − 1, ToRGB is last
    // (docs/stylegan3.md).
    return info_.style_is_channel(static_cast<size_t>(layer)) ? layer - 1 : -1;
  }
  // Style layer order (docs/algorithms.md §3.1): conv1, to_rgb1, then per resolution k: convs[2k],
  // convs[2k+1], to_rgbs[k].
  if (layer < 2) return -1;
  const int64_t k = (layer - 2) / 3;
  const int64_t r = (layer - 2) % 3;
  return r == 2 ? -1 : 2 * k + r;
}

std::vector<torch::Tensor> Generator::synthesis_prefix(const std::vector<torch::Tensor>& styles,
                                                       int64_t upto) const {
  return impl_->module.get_method("synthesis_prefix")({tensor_list(styles, device_), upto})
      .toTensorVector();
}

torch::Tensor Generator::synthesis_suffix(const std::vector<torch::Tensor>& prefix, int64_t upto,
                                          const std::vector<torch::Tensor>& styles) const {
  return impl_->module
      .get_method("synthesis_suffix")(
          {tensor_list(prefix, device_), upto, tensor_list(styles, device_)})
      .toTensor()
      .to(torch::kFloat32);
}

torch::Tensor Generator::synthesis_from_styles(const std::vector<torch::Tensor>& styles,
                                               bool randomize_noise) const {
  if (styles.size() != info_.style_dims.size()) {
    throw input_error("style code has " + std::to_string(styles.size()) + " layers, expected " +
                      std::to_string(info_.style_dims.size()));
  }
  c10::List<torch::Tensor> list;
  for (size_t i = 0; i < styles.size(); ++i) {
    if (styles[i].dim() != 2 || styles[i].size(1) != info_.style_dims[i] ||
        styles[i].size(0) != styles[0].size(0)) {
      throw input_error("style layer " + std::to_string(i) + " has shape " + shape_str(styles[i]) +
                        ", expected [N, " + std::to_string(info_.style_dims[i]) + "]");
    }
    list.push_back(styles[i].to(device_));
  }
  return impl_->module.get_method("synthesis_from_styles")({list, randomize_noise})
      .toTensor()
      .to(torch::kFloat32);
}

torch::Tensor Generator::input_transform_matrix(double x, double y, double degrees) {
  // gen_images.py (NVlabs/stylegan3): make_transform(translate, angle), then its inverse is what
  // the input layer's `transform` buffer holds.
  const double a = degrees / 360.0 * 2.0 * M_PI;
  const double c = std::cos(a);
  const double s = std::sin(a);
  const auto m = torch::tensor({c, s, x, -s, c, y, 0.0, 0.0, 1.0}, torch::kFloat64).reshape({3, 3});
  return torch::inverse(m).to(torch::kFloat32);
}

void Generator::set_input_transform(double x, double y, double degrees) {
  if (info_.family != GeneratorFamily::kStyleGAN3 ||
      !impl_->module.find_method("set_transform").has_value()) {
    throw usage_error(
        "--translate and --rotate move StyleGAN3's input; this bundle's generator is " +
        std::string(to_string(info_.family)) + " (drop them)");
  }
  torch::NoGradGuard no_grad;
  impl_->module.get_method("set_transform")({input_transform_matrix(x, y, degrees).to(device_)});
}

torch::Tensor Generator::input_transform() const {
  if (!impl_->module.find_method("get_transform").has_value()) return {};
  return impl_->module.get_method("get_transform")({}).toTensor().cpu();
}

}  // namespace styleclip
