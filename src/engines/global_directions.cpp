#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/runtime.h>

#include <cmath>
#include <fstream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/script.h>

namespace styleclip {
namespace F = torch::nn::functional;
using nlohmann::json;

const std::vector<std::string>& imagenet_templates() {
  // CLIP's ImageNet prompt-engineering templates (openai/CLIP notebooks), with
  // 'a photo of many {}.' left out as StyleCLIP's MapTS.py / global_torch/StyleCLIP.py do.
  static const std::vector<std::string> kTemplates = {"a bad photo of a {}.",
                                                      "a sculpture of a {}.",
                                                      "a photo of the hard to see {}.",
                                                      "a low resolution photo of the {}.",
                                                      "a rendering of a {}.",
                                                      "graffiti of a {}.",
                                                      "a bad photo of the {}.",
                                                      "a cropped photo of the {}.",
                                                      "a tattoo of a {}.",
                                                      "the embroidered {}.",
                                                      "a photo of a hard to see {}.",
                                                      "a bright photo of a {}.",
                                                      "a photo of a clean {}.",
                                                      "a photo of a dirty {}.",
                                                      "a dark photo of the {}.",
                                                      "a drawing of a {}.",
                                                      "a photo of my {}.",
                                                      "the plastic {}.",
                                                      "a photo of the cool {}.",
                                                      "a close-up photo of a {}.",
                                                      "a black and white photo of the {}.",
                                                      "a painting of the {}.",
                                                      "a painting of a {}.",
                                                      "a pixelated photo of the {}.",
                                                      "a sculpture of the {}.",
                                                      "a bright photo of the {}.",
                                                      "a cropped photo of a {}.",
                                                      "a plastic {}.",
                                                      "a photo of the dirty {}.",
                                                      "a jpeg corrupted photo of a {}.",
                                                      "a blurry photo of the {}.",
                                                      "a photo of the {}.",
                                                      "a good photo of the {}.",
                                                      "a rendering of the {}.",
                                                      "a {} in a video game.",
                                                      "a photo of one {}.",
                                                      "a doodle of a {}.",
                                                      "a close-up photo of the {}.",
                                                      "a photo of a {}.",
                                                      "the origami {}.",
                                                      "the {} in a video game.",
                                                      "a sketch of a {}.",
                                                      "a doodle of the {}.",
                                                      "a origami {}.",
                                                      "a low resolution photo of a {}.",
                                                      "the toy {}.",
                                                      "a rendition of the {}.",
                                                      "a photo of the clean {}.",
                                                      "a photo of a large {}.",
                                                      "a rendition of a {}.",
                                                      "a photo of a nice {}.",
                                                      "a photo of a weird {}.",
                                                      "a blurry photo of a {}.",
                                                      "a cartoon {}.",
                                                      "art of a {}.",
                                                      "a sketch of the {}.",
                                                      "a embroidered {}.",
                                                      "a pixelated photo of a {}.",
                                                      "itap of the {}.",
                                                      "a jpeg corrupted photo of the {}.",
                                                      "a good photo of a {}.",
                                                      "a plushie {}.",
                                                      "a photo of the nice {}.",
                                                      "a photo of the small {}.",
                                                      "a photo of the weird {}.",
                                                      "the cartoon {}.",
                                                      "art of the {}.",
                                                      "a drawing of the {}.",
                                                      "a photo of the large {}.",
                                                      "a black and white photo of a {}.",
                                                      "the plushie {}.",
                                                      "a dark photo of a {}.",
                                                      "itap of a {}.",
                                                      "graffiti of the {}.",
                                                      "a toy {}.",
                                                      "itap of my {}.",
                                                      "a photo of a cool {}.",
                                                      "a photo of a small {}.",
                                                      "a tattoo of the {}."};
  return kTemplates;
}

std::vector<int64_t> default_global_layers(const GeneratorInfo& info) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < static_cast<int64_t>(info.style_dims.size()); ++l) {
    const auto i = static_cast<size_t>(l);
    if (info.style_is_channel(i) && info.style_resolutions.at(i) <= 128) out.push_back(l);
  }
  return out;
}

json PrepareOptions::to_json() const {
  json j = {{"samples", samples},
            {"images", images},
            {"layers", layers},
            {"seed", seed},
            {"truncation", truncation},
            {"sigma", sigma},
            {"precision", to_string(precision)}};
  if (class_index) j["class"] = *class_index;
  return j;
}

std::vector<int64_t> GlobalStats::offsets(const GeneratorInfo& info) const {
  std::vector<int64_t> out;
  int64_t at = 0;
  for (const auto l : layers) {
    out.push_back(at);
    at += info.style_dims[static_cast<size_t>(l)];
  }
  return out;
}

void GlobalStats::save(const std::filesystem::path& path) const {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("layers", torch::tensor(layers, torch::kInt64));
  c10::List<torch::Tensor> mean;
  c10::List<torch::Tensor> std;
  for (const auto& t : s_mean) mean.push_back(t.detach().cpu().contiguous());
  for (const auto& t : s_std) std.push_back(t.detach().cpu().contiguous());
  d.insert("s_mean", mean);
  d.insert("s_std", std);
  d.insert("directions", directions.detach().cpu().contiguous());
  d.insert("meta", meta.dump());
  const auto bytes = torch::jit::pickle_save(d);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

GlobalStats GlobalStats::load(const std::filesystem::path& path, const GeneratorInfo& info,
                              bool partial) {
  const auto bad = [&](const std::string& why) {
    return bundle_error("invalid global statistics '" + path.string() + "': " + why +
                        " (run styleclip global prepare again)");
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad("cannot open file");
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  GlobalStats s;
  try {
    const auto dict = torch::jit::pickle_load(data).toGenericDict();
    const auto layers = dict.at("layers").toTensor();
    s.layers.assign(layers.data_ptr<int64_t>(), layers.data_ptr<int64_t>() + layers.numel());
    // Lists written by C++ arrive as tensor lists, by Python's torch.save as generic lists.
    const auto means = dict.at("s_mean");
    const auto stds = dict.at("s_std");
    for (const auto& v : means.toListRef()) s.s_mean.push_back(v.toTensor().to(torch::kFloat32));
    for (const auto& v : stds.toListRef()) s.s_std.push_back(v.toTensor().to(torch::kFloat32));
    s.directions = dict.at("directions").toTensor().to(torch::kFloat32);
    s.meta = json::parse(dict.at("meta").toStringRef());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw bad(torch_message(e));
  }
  if (s.s_mean.size() != info.style_dims.size() || s.s_std.size() != info.style_dims.size()) {
    throw bad("it has " + std::to_string(s.s_mean.size()) + " style layers, the generator " +
              std::to_string(info.style_dims.size()));
  }
  int64_t rows = 0;
  for (size_t l = 0; l < info.style_dims.size(); ++l) {
    if (s.s_mean[l].numel() != info.style_dims[l] || s.s_std[l].numel() != info.style_dims[l]) {
      throw bad("layer " + std::to_string(l) + " statistics do not match the generator's width " +
                std::to_string(info.style_dims[l]));
    }
    s.s_mean[l] = s.s_mean[l].view({-1});
    s.s_std[l] = s.s_std[l].view({-1});
  }
  for (const auto l : s.layers) {
    if (l < 0 || l >= static_cast<int64_t>(info.style_dims.size()))
      throw bad("unknown layer " + std::to_string(l));
    rows += info.style_dims[static_cast<size_t>(l)];
  }
  if (s.directions.dim() != 2 ||
      (partial ? s.directions.size(0) > rows : s.directions.size(0) != rows)) {
    throw bad("directions have " +
              std::to_string(s.directions.dim() == 2 ? s.directions.size(0) : -1) +
              " rows, the layers need " + std::to_string(rows));
  }
  return s;
}

StyleStatistics style_statistics(const Generator& gen, const PrepareOptions& o) {
  torch::NoGradGuard no_grad;
  const auto& info = gen.info();
  const size_t n_layers = info.style_dims.size();
  auto rng = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<torch::Tensor> sum(n_layers), sumsq(n_layers);
  std::vector<std::vector<torch::Tensor>> first(n_layers);
  int64_t kept = 0;
  constexpr int64_t kChunk = 1000;  // the reference maps W in chunks of 1000 as well
  for (int64_t start = 0; start < o.samples; start += kChunk) {
    const int64_t n = std::min(kChunk, o.samples - start);
    const auto z =
        torch::randn({n, info.z_dim}, rng, torch::TensorOptions().dtype(torch::kFloat32));
    const auto w = gen.truncate(gen.mapping(z, gen.class_label(o.class_index, n)), o.truncation);
    const auto s = gen.styles(gen.broadcast(w));
    const int64_t take = std::min(n, o.images - kept);
    for (size_t l = 0; l < n_layers; ++l) {
      const auto d = s[l].to(torch::kFloat64);
      sum[l] = sum[l].defined() ? sum[l] + d.sum(0) : d.sum(0);
      sumsq[l] = sumsq[l].defined() ? sumsq[l] + d.pow(2).sum(0) : d.pow(2).sum(0);
      if (take > 0) first[l].push_back(s[l].slice(0, 0, take));
    }
    kept += std::max<int64_t>(take, 0);
  }
  StyleStatistics out;
  for (size_t l = 0; l < n_layers; ++l) {
    const auto mean = sum[l] / double(o.samples);
    const auto var = (sumsq[l] / double(o.samples) - mean.pow(2)).clamp_min(0.0);  // np.std, ddof 0
    out.mean.push_back(mean.to(torch::kFloat32));
    out.std.push_back(var.sqrt().to(torch::kFloat32));
    out.sample_styles.push_back(torch::cat(first[l], 0));
  }
  return out;
}

torch::Tensor clip_pixels_from_generated(const Clip& clip, const torch::Tensor& images) {
  const int64_t r = clip.info().image_resolution;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(images.device());
  const auto& info = clip.info();
  const auto mean =
      torch::tensor(std::vector<float>(info.image_mean.begin(), info.image_mean.end()), opts)
          .view({1, 3, 1, 1});
  const auto std =
      torch::tensor(std::vector<float>(info.image_std.begin(), info.image_std.end()), opts)
          .view({1, 3, 1, 1});
  // The reference saves 8-bit images and lets PIL resize them (SingleChannel.py → preprocess).
  auto x = torch::floor((images.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0 + 0.5);
  if (x.size(2) != r || x.size(3) != r) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{r, r})
                              .mode(torch::kBicubic)
                              .align_corners(false)
                              .antialias(true))
            .round()
            .clamp(0, 255);
  }
  return (x / 255.0 - mean) / std;
}

torch::Tensor channel_directions(const Generator& gen, const Clip& clip,
                                 const StyleStatistics& stats, int64_t layer, int64_t begin,
                                 int64_t end, const PrepareOptions& o) {
  torch::NoGradGuard no_grad;
  const auto dev = gen.device();
  const PrecisionScope precision(o.precision, dev);
  const int64_t k = stats.sample_styles[0].size(0);
  const int64_t channels = end - begin;
  const int64_t total = channels * 2 * k;
  const auto lu = static_cast<size_t>(layer);
  // Job j → (channel begin + j / (2k), sign (j / k) % 2: 0 is −σ, 1 is +σ, image j % k).
  const auto jobs = torch::arange(total, torch::TensorOptions().dtype(torch::kInt64));
  const auto job_image = jobs % k;
  const auto job_sign =
      torch::div(jobs, k, "floor") % 2;  // `/` on integer tensors is true division
  const auto job_channel = begin + torch::div(jobs, 2 * k, "floor");
  const auto mean_l = stats.mean[lu].to(dev);
  const auto std_l = stats.std[lu].to(dev);
  // The layers before the perturbed one see the same styles for every channel and sign: render
  // them once per sample image and finish each job from there (exact, fixed noise).
  std::vector<torch::Tensor> prefix;
  const int64_t upto = gen.conv_index_of_layer(layer);
  if (upto > 0 && o.prefix_cache_mib > 0 && gen.has_prefix_synthesis()) {
    std::vector<torch::Tensor> first;
    for (const auto& s : stats.sample_styles) first.push_back(s.slice(0, 0, 1).to(dev));
    int64_t bytes = 0;
    for (const auto& t : gen.synthesis_prefix(first, upto)) bytes += t.numel() * t.element_size();
    if (bytes * k <= o.prefix_cache_mib * (int64_t{1} << 20)) {
      std::vector<torch::Tensor> all;
      for (const auto& s : stats.sample_styles) all.push_back(s.to(dev));
      prefix = gen.synthesis_prefix(all, upto);
    }
  }
  std::vector<torch::Tensor> embeddings;
  for (int64_t start = 0; start < total; start += o.batch) {
    const int64_t stop = std::min(total, start + o.batch);
    const auto img = job_image.slice(0, start, stop).to(dev);
    const auto ch = job_channel.slice(0, start, stop).to(dev);
    const auto sign = job_sign.slice(0, start, stop).to(dev).to(torch::kFloat32) * 2.0 - 1.0;
    std::vector<torch::Tensor> styles;
    for (size_t m = 0; m < stats.sample_styles.size(); ++m) {
      styles.push_back(stats.sample_styles[m].to(dev).index_select(0, img));
    }
    // The channel is set to its dataset mean ± σ·std; the sample's own value is not used
    // (docs/algorithms.md §3.3).
    const auto value = mean_l.index_select(0, ch) + sign * o.sigma * std_l.index_select(0, ch);
    const auto rows =
        torch::arange(stop - start, torch::TensorOptions().dtype(torch::kInt64).device(dev));
    styles[lu] = styles[lu].index_put({rows, ch}, value);
    torch::Tensor images;
    if (prefix.empty()) {
      images = gen.synthesis_from_styles(styles);
    } else {
      std::vector<torch::Tensor> rows_prefix;
      for (const auto& t : prefix) rows_prefix.push_back(t.index_select(0, img));
      images = gen.synthesis_suffix(rows_prefix, upto, styles);
    }
    const auto f = clip.encode_pixels(clip_pixels_from_generated(clip, images));
    embeddings.push_back(F::normalize(f, F::NormalizeFuncOptions().dim(1)));
  }
  const auto e = torch::cat(embeddings, 0).view({channels, 2, k, -1});
  const auto d = F::normalize(e.select(1, 1) - e.select(1, 0), F::NormalizeFuncOptions().dim(2));
  return F::normalize(d.mean(1), F::NormalizeFuncOptions().dim(1));
}

namespace {

torch::Tensor class_embedding(const Clip& clip, const std::string& text, bool templates) {
  std::vector<std::string> texts;
  if (templates) {
    for (const auto& t : imagenet_templates()) {
      const auto at = t.find("{}");
      texts.push_back(t.substr(0, at) + text + t.substr(at + 2));
    }
  } else {
    texts.push_back(text);
  }
  const auto e = F::normalize(clip.encode_text(texts), F::NormalizeFuncOptions().dim(1));
  return F::normalize(e.mean(0), F::NormalizeFuncOptions().dim(0));
}

}  // namespace

torch::Tensor embedding_direction(const torch::Tensor& target, const torch::Tensor& neutral) {
  const auto t = F::normalize(target.view({-1}), F::NormalizeFuncOptions().dim(0));
  const auto n = F::normalize(neutral.view({-1}), F::NormalizeFuncOptions().dim(0));
  const auto d = t - n;
  const double norm = d.norm().item<double>();
  if (!(norm > 1e-6)) {
    throw usage_error(
        "the target and neutral give the same CLIP direction: describe a change "
        "(e.g. --neutral \"face\" --text \"smiling face\")");
  }
  return d / norm;
}

torch::Tensor text_direction(const Clip& clip, const std::string& target,
                             const std::string& neutral, bool templates) {
  torch::NoGradGuard no_grad;
  return embedding_direction(class_embedding(clip, target, templates),
                             class_embedding(clip, neutral, templates));
}

GlobalEdit global_delta(const GlobalStats& stats, const GeneratorInfo& info,
                        const torch::Tensor& dt, double beta) {
  torch::NoGradGuard no_grad;
  const auto dev = stats.directions.device();
  const auto r = stats.directions.matmul(dt.to(dev).view({-1}));
  const auto keep = r.abs() >= beta;
  GlobalEdit e;
  e.channels = keep.sum().item<int64_t>();
  e.max_relevance = r.abs().max().item<double>();
  for (size_t l = 0; l < info.style_dims.size(); ++l)
    e.delta.push_back(torch::zeros({info.style_dims[l]}, r.options()));
  if (e.channels == 0) return e;  // the reference would divide by zero here
  auto d = torch::where(keep, r, torch::zeros_like(r));
  d = d / d.abs().max();
  const auto offsets = stats.offsets(info);
  for (size_t i = 0; i < stats.layers.size(); ++i) {
    const auto l = static_cast<size_t>(stats.layers[i]);
    e.delta[l] = d.slice(0, offsets[i], offsets[i] + info.style_dims[l]) * stats.s_std[l].to(dev);
  }
  return e;
}

double auto_threshold(const GlobalStats& stats, const GeneratorInfo& info, const torch::Tensor& dt,
                      int64_t min_channels) {
  for (int i = 29; i >= 10; --i) {
    const double beta = i / 100.0;
    if (global_delta(stats, info, dt, beta).channels > min_channels) return beta;
  }
  return 0.10;
}

std::vector<torch::Tensor> apply_delta(const std::vector<torch::Tensor>& styles,
                                       const GlobalEdit& edit, double alpha) {
  std::vector<torch::Tensor> out;
  for (size_t l = 0; l < styles.size(); ++l) {
    out.push_back(styles[l] + alpha * edit.delta[l].to(styles[l].device()).unsqueeze(0));
  }
  return out;
}

}  // namespace styleclip
