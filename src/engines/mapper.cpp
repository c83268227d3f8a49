#include <styleclip/engines/mapper.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <torch/optim/serialize.h>
#include <torch/script.h>
#include <torch/serialize.h>

namespace styleclip {
using nlohmann::json;

namespace {

constexpr double kLrMul = 0.01;  // latent_mappers.py: EqualLinear(..., lr_mul=0.01)
constexpr int kLayers = 4;       // latent_mappers.py: 4 layers per Mapper
constexpr const char* kFormat = "styleclip-mapper";
constexpr int64_t kVersion = 1;

}  // namespace

// --- options -------------------------------------------------------------------------------------

bool MapperGroups::enabled(int group) const {
  return group == 0 ? coarse : group == 1 ? medium : fine;
}

json MapperGroups::to_json() const {
  json out = json::array();
  for (int g = 0; g < 3; ++g)
    if (enabled(g)) out.push_back(kMapperGroupNames[static_cast<size_t>(g)]);
  return out;
}

MapperGroups MapperGroups::from_names(const std::vector<std::string>& names) {
  MapperGroups g{false, false, false};
  for (const auto& n : names) {
    if (n == "coarse") {
      g.coarse = true;
    } else if (n == "medium") {
      g.medium = true;
    } else if (n == "fine") {
      g.fine = true;
    } else {
      throw usage_error("unknown mapper group '" + n + "': expected coarse, medium or fine");
    }
  }
  return g;
}

std::pair<int64_t, int64_t> mapper_group_rows(int group, int64_t num_ws) {
  // latent_mappers.py LevelsMapper: x[:, :4], x[:, 4:8], x[:, 8:] (clamped, as slicing does).
  static constexpr std::array<int64_t, 3> kBegin = {0, 4, 8};
  static constexpr std::array<int64_t, 3> kEnd = {4, 8, INT64_MAX};
  const auto g = static_cast<size_t>(group);
  const int64_t b = std::min(kBegin[g], num_ws);
  return {b, std::max(b, std::min(kEnd[g], num_ws))};
}

std::string to_string(PixelNormMode m) { return m == PixelNormMode::kRows ? "rows" : "features"; }

PixelNormMode parse_pixel_norm(const std::string& s) {
  if (s == "rows") return PixelNormMode::kRows;
  if (s == "features") return PixelNormMode::kFeatures;
  throw usage_error("invalid pixel-norm mode '" + s + "': expected rows or features");
}

json LevelsMapperOptions::to_json() const {
  return {{"num_ws", num_ws},
          {"w_dim", w_dim},
          {"groups", groups.to_json()},
          {"pixel_norm", to_string(pixel_norm)},
          {"seed", seed}};
}

// --- the network (latent_mappers.py; EqualLinear from models/stylegan2/model.py) ---------------

EqualLinearImpl::EqualLinearImpl(int64_t in, int64_t out, double lr_mul, at::Generator& rng)
    : scale_(lr_mul / std::sqrt(double(in))), lr_mul_(lr_mul) {
  weight_ = register_parameter("weight", torch::randn({out, in}, rng, torch::kFloat32) / lr_mul);
  bias_ = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor EqualLinearImpl::forward(const torch::Tensor& x) {
  // fused_leaky_relu on CPU: leaky_relu(linear(x, W·scale) + b·lr_mul, 0.2)·√2.
  const auto out = torch::linear(x, weight_ * scale_) + bias_ * lr_mul_;
  return torch::leaky_relu(out, 0.2) * M_SQRT2;
}

GroupMapperImpl::GroupMapperImpl(int64_t w_dim, PixelNormMode mode, at::Generator& rng)
    : mode_(mode) {
  // Names mapping.1 … mapping.4, as the reference's Sequential(PixelNorm, EqualLinear × 4).
  auto mapping = register_module("mapping", std::make_shared<torch::nn::Module>("Mapping"));
  for (int i = 1; i <= kLayers; ++i) {
    layers_.push_back(
        mapping->register_module(std::to_string(i), EqualLinear(w_dim, w_dim, kLrMul, rng)));
  }
}

torch::Tensor GroupMapperImpl::forward(const torch::Tensor& x) {
  // The reference's PixelNorm takes the mean over dim 1 of a [B, rows, w_dim] tensor, i.e. over
  // the group's W+ rows (docs/algorithms.md §2.1); kFeatures is the usual per-vector norm.
  const int64_t dim = mode_ == PixelNormMode::kRows ? 1 : 2;
  auto h = x * torch::rsqrt(torch::mean(x * x, {dim}, /*keepdim=*/true) + 1e-8);
  for (auto& layer : layers_) h = layer->forward(h);
  return h;
}

LevelsMapperImpl::LevelsMapperImpl(const LevelsMapperOptions& options) : options_(options) {
  if (options.num_ws < 1 || options.w_dim < 1) {
    throw usage_error("invalid mapper shape: " + std::to_string(options.num_ws) +
                      " rows of width " + std::to_string(options.w_dim));
  }
  auto rng = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  for (int g = 0; g < 3; ++g) {
    const auto [b, e] = mapper_group_rows(g, options.num_ws);
    if (b == e || !options.groups.enabled(g)) continue;
    const auto gi = static_cast<size_t>(g);
    groups_[gi] = register_module(kMapperModuleNames[gi],
                                  GroupMapper(options.w_dim, options.pixel_norm, rng));
  }
}

torch::Tensor LevelsMapperImpl::forward(const torch::Tensor& w) {
  if (w.dim() != 3 || w.size(0) < 1 || w.size(1) != options_.num_ws ||
      w.size(2) != options_.w_dim) {
    throw input_error("mapper input has shape " + c10::str(w.sizes()) + ": expected [N, " +
                      std::to_string(options_.num_ws) + ", " + std::to_string(options_.w_dim) +
                      "]");
  }
  std::vector<torch::Tensor> parts;
  for (int g = 0; g < 3; ++g) {
    const auto [b, e] = mapper_group_rows(g, options_.num_ws);
    if (b == e) continue;
    const auto x = w.narrow(1, b, e - b);
    auto& m = groups_[static_cast<size_t>(g)];
    parts.push_back(m ? m->forward(x) : torch::zeros_like(x));
  }
  auto out = torch::cat(parts, 1);
  if (options_.generator_family == "stylegan3") {
    // Row 0 drives StyleGAN3's input transform (it turns and shifts the picture): an edit leaves
    // it alone, so the coarse group acts on rows 1-3 there (docs/stylegan3.md).
    out =
        torch::cat({torch::zeros_like(out.narrow(1, 0, 1)), out.narrow(1, 1, out.size(1) - 1)}, 1);
  }
  return out;
}

torch::Tensor LevelsMapperImpl::apply(const torch::Tensor& w, double strength) {
  return w + strength * forward(w);
}

// --- mapper files ------------------------------------------------------------------------------

void save_mapper(const std::filesystem::path& path, const LevelsMapper& mapper, const json& meta,
                 double strength) {
  const auto& o = mapper->options();
  c10::Dict<std::string, torch::Tensor> weights;
  for (const auto& p : mapper->named_parameters())
    weights.insert(p.key(), p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous());
  // The groups the mapper has: enabled and with rows in this generator.
  c10::List<std::string> groups;
  for (int g = 0; g < 3; ++g) {
    const auto [b, e] = mapper_group_rows(g, o.num_ws);
    if (o.groups.enabled(g) && b < e) groups.push_back(kMapperGroupNames[static_cast<size_t>(g)]);
  }

  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("format", std::string(kFormat));
  d.insert("version", kVersion);
  d.insert("num_ws", o.num_ws);
  d.insert("w_dim", o.w_dim);
  d.insert("groups", groups);
  d.insert("pixel_norm", to_string(o.pixel_norm));
  d.insert("strength", strength);
  d.insert("state_dict", weights);
  d.insert("meta", meta.dump());
  d.insert("generator_family", o.generator_family);
  const auto bytes = torch::jit::pickle_save(d);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

MapperFile load_mapper(const std::filesystem::path& path, int64_t num_ws, int64_t w_dim,
                       torch::Device device, const std::string& family) {
  const std::string name = "'" + path.string() + "'";
  const auto bad = [&](const std::string& why) {
    return bundle_error("invalid mapper " + name + ": " + why);
  };
  if (!std::filesystem::exists(path))
    throw bundle_error("cannot read mapper " + name + ": file does not exist");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bundle_error("cannot read mapper " + name + ": cannot open file");
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  LevelsMapperOptions o;
  MapperFile f;
  c10::impl::GenericDict weights(c10::StringType::get(), c10::AnyType::get());
  try {
    check_torch_archive(data, "cannot read mapper " + name);
  } catch (const Error& e) {
    throw bundle_error(e.what());  // mapper files report as models (exit 3), like the rest here
  }
  try {
    // Keep the loaded value alive: the dict and its lists refer into it.
    const auto value = torch::jit::pickle_load(data);
    if (!value.isGenericDict()) throw bad("not a mapper file (no dict inside)");
    const auto dict = value.toGenericDict();
    if (!dict.contains("format") && dict.contains("state_dict") && dict.contains("opts")) {
      throw bad(
          "this is a StyleCLIP training checkpoint: convert it first with "
          "scripts/styleclip_export/mapper.py");
    }
    if (!dict.contains("format") || dict.at("format").toStringRef() != kFormat)
      throw bad("not a styleclip mapper file");
    if (dict.at("version").toInt() != kVersion) {
      throw bad("format version " + std::to_string(dict.at("version").toInt()) +
                " is not supported (this build reads version " + std::to_string(kVersion) + ")");
    }
    o.generator_family = dict.contains("generator_family")
                             ? dict.at("generator_family").toStringRef()
                             : std::string("stylegan2");
    if (o.generator_family != family) {
      throw bundle_error("mapper " + name + " was trained for a " + o.generator_family +
                         " generator; this bundle's is " + family +
                         " (its W+ rows mean other things): train one for this generator with "
                         "styleclip mapper train");
    }
    o.num_ws = dict.at("num_ws").toInt();
    o.w_dim = dict.at("w_dim").toInt();
    if (o.num_ws != num_ws || o.w_dim != w_dim) {
      throw bundle_error("mapper " + name + " does not fit this generator: expected " +
                         std::to_string(num_ws) + " W+ rows of width " + std::to_string(w_dim) +
                         ", found " + std::to_string(o.num_ws) + " rows of width " +
                         std::to_string(o.w_dim) +
                         " (train or import a mapper for this generator)");
    }
    const auto groups_value = dict.at("groups");
    std::vector<std::string> groups;
    for (const auto& g : groups_value.toListRef()) groups.push_back(g.toStringRef());
    o.groups = MapperGroups::from_names(groups);
    o.pixel_norm = parse_pixel_norm(dict.at("pixel_norm").toStringRef());
    const auto strength = dict.at("strength");
    f.strength = strength.isInt() ? double(strength.toInt()) : strength.toDouble();
    f.meta = json::parse(dict.at("meta").toStringRef());
    weights = dict.at("state_dict").toGenericDict();
  } catch (const Error& e) {
    if (e.code() == ExitCode::kBundleInvalid) throw;
    throw bad(e.what());
  } catch (const std::exception& e) {
    throw bad(torch_message(e));
  }

  f.mapper = LevelsMapper(o);
  std::set<std::string> expected;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : f.mapper->named_parameters()) {
      expected.insert(p.key());
      if (!weights.contains(p.key())) throw bad("tensor '" + p.key() + "' is missing");
      const auto& v = weights.at(p.key());
      if (!v.isTensor()) throw bad("'" + p.key() + "' is not a tensor");
      const auto t = v.toTensor();
      if (t.sizes() != p.value().sizes()) {
        throw bad("tensor '" + p.key() + "' has shape " + c10::str(t.sizes()) + ", expected " +
                  c10::str(p.value().sizes()));
      }
      p.value().copy_(t.to(torch::kFloat32));
    }
  }
  for (const auto& item : weights) {
    const auto& key = item.key().toStringRef();
    if (expected.count(key) == 0) {
      throw bad("unexpected tensor '" + key + "' (its groups are " + o.groups.to_json().dump() +
                ")");
    }
  }
  f.mapper->to(device);
  return f;
}

// --- Ranger (StyleCLIP mapper/training/ranger.py, v20.4.11) --------------------------------------

RangerOptions::RangerOptions(double lr) : lr_(lr) {}

void RangerOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(alpha);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(k);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(n_sma_threshold);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(use_gc);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(gc_conv_only);
}

void RangerOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, alpha);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, k);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, n_sma_threshold);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, use_gc);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, gc_conv_only);
}

double RangerOptions::get_lr() const { return lr(); }
void RangerOptions::set_lr(double lr) { this->lr(lr); }

void RangerParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(slow_buffer);
}

void RangerParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, slow_buffer);
}

Ranger::Ranger(std::vector<torch::optim::OptimizerParamGroup> param_groups, RangerOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<RangerOptions>(defaults)) {
  // ranger.py's checks.
  TORCH_CHECK(defaults.alpha() >= 0 && defaults.alpha() <= 1,
              "Invalid slow update rate: ", defaults.alpha());
  TORCH_CHECK(defaults.k() >= 1, "Invalid lookahead steps: ", defaults.k());
  TORCH_CHECK(defaults.lr() > 0, "Invalid Learning Rate: ", defaults.lr());
  TORCH_CHECK(defaults.eps() > 0, "Invalid eps: ", defaults.eps());
}

torch::Tensor Ranger::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const RangerOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas());
    const double beta2 = std::get<1>(o.betas());
    const int64_t gc_threshold = o.gc_conv_only() ? 3 : 1;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "Ranger optimizer does not support sparse gradients");
      // Half precision is updated in float32 as the reference's `.float()` does.
      const bool reduced = p.scalar_type() == torch::kHalf || p.scalar_type() == torch::kBFloat16;
      const auto work = reduced ? torch::kFloat32 : p.scalar_type();
      auto grad = p.grad().to(work);
      auto data = p.detach().to(work);

      const auto key = optimizer_state_key<decltype(state_)>(p);
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto s = std::make_unique<RangerParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(data));
        s->exp_avg_sq(torch::zeros_like(data));
        s->slow_buffer(p.detach().clone());  // Lookahead's slow weights start as the initial p
        it = state_.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<RangerParamState&>(*it->second);
      auto& m = s.exp_avg();
      auto& v = s.exp_avg_sq();

      // Gradient centralisation (arXiv 2004.01461): remove the mean over all dims but the first.
      if (o.use_gc() && grad.dim() > gc_threshold) {
        std::vector<int64_t> dims;
        for (int64_t d = 1; d < grad.dim(); ++d) dims.push_back(d);
        grad = grad - grad.mean(dims, /*keepdim=*/true);
      }
      s.step(s.step() + 1);
      const auto t = double(s.step());
      v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      m.mul_(beta1).add_(grad, 1 - beta1);

      // RAdam's rectification (Liu et al. 2019; ranger.py keeps these per step in a cache).
      const double beta2_t = std::pow(beta2, t);
      const double n_sma_max = 2 / (1 - beta2) - 1;
      const double n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t);
      const bool rectified = n_sma > o.n_sma_threshold();
      const double step_size = rectified
                                   ? std::sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) *
                                               (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)) /
                                         (1 - std::pow(beta1, t))
                                   : 1.0 / (1 - std::pow(beta1, t));

      if (o.weight_decay() != 0) data.add_(data, -o.weight_decay() * o.lr());
      if (rectified) {
        data.addcdiv_(m, v.sqrt().add_(o.eps()), -step_size * o.lr());
      } else {
        data.add_(m, -step_size * o.lr());
      }
      p.detach().copy_(data);

      // Lookahead (Zhang et al. 2019), per parameter every k steps.
      if (s.step() % o.k() == 0) {
        auto& slow = s.slow_buffer();
        slow.add_(p.detach() - slow, o.alpha());
        p.detach().copy_(slow);
      }
    }
  }
  return loss;
}

void Ranger::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<RangerParamState, RangerOptions>(archive, *this);
}

void Ranger::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<RangerParamState, RangerOptions>(archive, *this);
}

void save_optimizer_state(const std::filesystem::path& path,
                          const torch::optim::Optimizer& optimizer) {
  std::ostringstream out;
  torch::save(optimizer, out);
  write_file_atomic(path, out.str());
}

void load_optimizer_state(const std::filesystem::path& path, torch::optim::Optimizer& optimizer) {
  if (!std::filesystem::exists(path))
    throw input_error("cannot read optimiser state '" + path.string() + "': file does not exist");
  try {
    torch::load(optimizer, path.string());
  } catch (const std::exception& e) {
    throw input_error("cannot read optimiser state '" + path.string() + "': " + torch_message(e));
  }
}

// --- training (mapper/training/coach.py) ---------------------------------------------------------

json MapperTrainOptions::to_json() const {
  return {{"clip_lambda", clip_lambda},
          {"l2_lambda", l2_lambda},
          {"id_lambda", id_lambda},
          {"lr", lr},
          {"strength", strength},
          {"groups", groups.to_json()},
          {"optimizer", optimizer},
          {"batch", batch},
          {"seed", seed},
          {"precision", to_string(precision)}};
}

void validate(const MapperTrainOptions& o, bool has_identity_model) {
  const auto non_negative = [](double v, const char* flag) {
    if (!(v >= 0) || !std::isfinite(v))
      throw usage_error(std::string("invalid ") + flag + ": must be zero or positive");
  };
  non_negative(o.clip_lambda, "--clip-lambda");
  non_negative(o.l2_lambda, "--l2-lambda");
  non_negative(o.id_lambda, "--id-lambda");
  if (!(o.lr > 0) || !std::isfinite(o.lr))
    throw usage_error("invalid --lr: must be a positive number");
  if (!std::isfinite(o.strength)) throw usage_error("invalid --strength: must be a number");
  if (!o.groups.coarse && !o.groups.medium && !o.groups.fine)
    throw usage_error("invalid mapper groups: at least one of coarse, medium, fine is needed");
  if (o.optimizer != "ranger" && o.optimizer != "adam") {
    throw usage_error("invalid --optimizer '" + o.optimizer + "': expected ranger or adam");
  }
  if (o.batch < 1)
    throw usage_error("invalid --batch " + std::to_string(o.batch) + ": must be at least 1");
  if (o.id_lambda > 0 && !has_identity_model) {
    throw usage_error(
        "--id-lambda needs an identity model, and the bundle has none "
        "(add one with scripts/export_bundle.py --identity, or use --id-lambda 0)");
  }
}

std::unique_ptr<torch::optim::Optimizer> make_mapper_optimizer(LevelsMapper& mapper,
                                                               const MapperTrainOptions& o) {
  auto params = mapper->parameters();
  if (o.optimizer == "ranger") return std::make_unique<Ranger>(params, RangerOptions(o.lr));
  if (o.optimizer == "adam") {
    // coach.py: torch.optim.Adam(params, lr=learning_rate), PyTorch's other defaults.
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr));
  }
  throw usage_error("invalid --optimizer '" + o.optimizer + "': expected ranger or adam");
}

MapperStepLosses mapper_train_step(LevelsMapper& mapper, torch::optim::Optimizer& optimizer,
                                   const Generator& gen, const ClipLoss& clip_loss,
                                   const IdentityModel* identity, const torch::Tensor& text,
                                   const torch::Tensor& w, const MapperTrainOptions& o) {
  validate(o, identity != nullptr);
  gen.check_wplus(w, "training batch");
  const auto dev = gen.device();
  const auto w0 = w.to(dev).detach();
  const auto text_e = text.to(dev).detach();
  mapper->train();
  optimizer.zero_grad();
  const PrecisionScope precision(o.precision, dev);

  // coach.py train(): x from w with fixed noise (no gradient), w' = w + 0.1·M(w), x' = G(w').
  std::optional<IdentityLoss> id_loss;
  if (o.id_lambda > 0) {
    torch::Tensor x;
    {
      torch::NoGradGuard no_grad;
      x = gen.synthesis(w0);
    }
    id_loss.emplace(*identity, x);
  }
  const auto w_hat = mapper->apply(w0, o.strength);
  const auto x_hat = gen.synthesis(w_hat);

  // calc_loss (coach.py L223-245): batch means, nn.MSELoss on the latents.
  const auto clip = clip_loss(x_hat, text_e).mean();
  const auto l2 = torch::mse_loss(w_hat, w0);
  auto total = o.clip_lambda * clip + o.l2_lambda * l2;
  torch::Tensor id;
  if (id_loss) {
    id = (*id_loss)(x_hat).mean();
    total = total + o.id_lambda * id;
  }
  total.backward();
  optimizer.step();

  MapperStepLosses out;
  out.loss = total.item<double>();
  out.clip = clip.item<double>();
  out.l2 = l2.item<double>();
  if (id.defined()) out.id = id.item<double>();
  return out;
}

}  // namespace styleclip
