#include <styleclip/error.h>
#include <styleclip/models/clip.h>
#include <styleclip/runtime.h>
#include "script_module.h"

#include <cmath>
#include <sstream>

#include <torch/nn/functional/upsampling.h>

namespace styleclip {
namespace F = torch::nn::functional;

struct Clip::Impl {
  torch::jit::Module module;
  std::string path;
};

namespace {

/// Token ids [N, context_length] on the host; a text that does not fit is cut, with a warning.
torch::Tensor host_tokens(const Tokenizer& tokenizer, int context_length,
                          const std::vector<std::string>& texts) {
  auto out = torch::zeros({static_cast<int64_t>(texts.size()), context_length}, torch::kInt64);
  for (size_t r = 0; r < texts.size(); ++r) {
    const auto tok = tokenizer.tokenize(texts[r], context_length);
    if (tok.truncated) {
      warn("prompt '" + texts[r] + "' is longer than CLIP's " + std::to_string(context_length) +
           " tokens: it was cut");
    }
    out[static_cast<int64_t>(r)] = torch::tensor(tok.ids, torch::kInt64);
  }
  return out;
}

/// The model's encode_text on tokens already on its device; fp32 out whatever the autocast
/// scope: the losses and stored embeddings stay fp32.
torch::Tensor run_encode_text(torch::jit::Module& module, const torch::Tensor& tokens) {
  return module.get_method("encode_text")({tokens}).toTensor().to(torch::kFloat32);
}

}  // namespace

Clip::Clip(const Bundle& bundle, torch::Device device)
    : impl_(std::make_shared<Impl>()), info_(bundle.clip()), device_(device) {
  tokenizer_ = std::make_shared<Tokenizer>(bundle.file("vocab"), info_.vocab_merges);
  if (tokenizer_->vocab_size() != info_.vocab_size) {
    throw bundle_error("vocabulary '" + bundle.file("vocab").string() + "' has " +
                       std::to_string(tokenizer_->vocab_size()) +
                       " tokens, but the CLIP model expects " + std::to_string(info_.vocab_size) +
                       " (wrong vocabulary file or vocab_merges)");
  }
  impl_->path = bundle.file("clip").string();
  impl_->module =
      load_script_module(bundle.file("clip"), device, "CLIP model", {"encode_image", "encode_text"},
                         "re-export it with scripts/export_bundle.py --clip CKPT");
  if (!impl_->module.hasattr("logit_scale")) {
    throw bundle_error("'" + impl_->path +
                       "' is not a styleclip CLIP model: it has no 'logit_scale'");
  }
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  mean_ = torch::tensor(std::vector<float>(info_.image_mean.begin(), info_.image_mean.end()), opts)
              .view({1, 3, 1, 1});
  std_ = torch::tensor(std::vector<float>(info_.image_std.begin(), info_.image_std.end()), opts)
             .view({1, 3, 1, 1});

  // Dry run: one token row and one image of the recorded sizes must give embed_dim vectors.
  torch::NoGradGuard no_grad;
  torch::Tensor t;
  torch::Tensor i;
  try {
    // All context_length positions here (not encode_tokens, which drops the padding), so a
    // model that fails on full-length prompts fails now, not on the first long prompt.
    t = run_encode_text(impl_->module, tokenize({""}));
    i = encode_pixels(torch::zeros({1, 3, info_.image_resolution, info_.image_resolution}, opts));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw bundle_error("CLIP model '" + impl_->path +
                       "' does not match manifest.json: a dry run failed (" + torch_message(e) +
                       ")");
  }
  if (t.sizes() != torch::IntArrayRef{1, info_.embed_dim} ||
      i.sizes() != torch::IntArrayRef{1, info_.embed_dim}) {
    std::ostringstream s;
    s << "CLIP model '" << impl_->path << "' does not match manifest.json: embeddings have shapes "
      << t.sizes() << " and " << i.sizes() << ", expected [1, " << info_.embed_dim << "]";
    throw bundle_error(s.str());
  }
}

double Clip::logit_scale() const {
  return std::exp(impl_->module.attr("logit_scale").toTensor().item<double>());
}

torch::Tensor Clip::tokenize(const std::vector<std::string>& texts) const {
  return host_tokens(*tokenizer_, info_.context_length, texts).to(device_);
}

torch::Tensor Clip::encode_tokens(const torch::Tensor& tokens) const {
  torch::Tensor t = tokens;
  if (t.dim() == 2 && t.size(0) > 0 && t.size(1) > 0) {
    // Positions up to the last non-zero id of any row: each row's end token and all before it.
    // (encode_text passes host tokens; device tokens cost one small read back.)
    const auto nonzero = (t != 0).any(0).nonzero();
    const int64_t used = nonzero.numel() > 0 ? nonzero.max().item<int64_t>() + 1 : 1;
    if (used < t.size(1)) t = t.narrow(1, 0, used);
  }
  return run_encode_text(impl_->module, t.to(device_));
}

torch::Tensor Clip::encode_text(const std::vector<std::string>& texts) const {
  return encode_tokens(host_tokens(*tokenizer_, info_.context_length, texts));
}

torch::Tensor Clip::encode_pixels(const torch::Tensor& pixels) const {
  const int64_t r = info_.image_resolution;
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != r || pixels.size(3) != r) {
    std::ostringstream s;
    s << "CLIP pixels have shape " << pixels.sizes() << ", expected [N, 3, " << r << ", " << r
      << "]";
    throw input_error(s.str());
  }
  return impl_->module.get_method("encode_image")({pixels.to(device_)})
      .toTensor()
      .to(torch::kFloat32);
}

torch::Tensor Clip::encode_image(const torch::Tensor& images) const {
  const int64_t r = info_.image_resolution;
  auto x = (images.to(device_) + 1.0) * 0.5;
  if (x.size(2) != r || x.size(3) != r) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{r, r})
                              .mode(torch::kBicubic)
                              .align_corners(false)
                              .antialias(x.size(2) > r || x.size(3) > r));
  }
  return encode_pixels((x - mean_) / std_);
}

torch::Tensor Clip::preprocess(const torch::Tensor& hwc_uint8) const {
  if (hwc_uint8.dim() != 3 || hwc_uint8.size(2) != 3 || hwc_uint8.scalar_type() != torch::kUInt8) {
    throw input_error("CLIP preprocessing expects an [H, W, 3] 8-bit RGB image");
  }
  const int64_t r = info_.image_resolution;
  const int64_t h = hwc_uint8.size(0);
  const int64_t w = hwc_uint8.size(1);
  // torchvision Resize(int): the shorter side becomes r, the longer int(r * long / short).
  const int64_t nh = h <= w ? r : static_cast<int64_t>(double(r) * double(h) / double(w));
  const int64_t nw = h <= w ? static_cast<int64_t>(double(r) * double(w) / double(h)) : r;
  auto x = hwc_uint8.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32);
  if (nh != h || nw != w) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{nh, nw})
                              .mode(torch::kBicubic)
                              .align_corners(false)
                              .antialias(true));
    x = x.round().clamp(0, 255);  // PIL resizes 8-bit images to 8 bits
  }
  // CenterCrop: offsets int(round((size - r) / 2)) with Python's round-half-to-even.
  const auto top = static_cast<int64_t>(std::nearbyint(double(nh - r) / 2.0));
  const auto left = static_cast<int64_t>(std::nearbyint(double(nw - r) / 2.0));
  x = x.slice(2, top, top + r).slice(3, left, left + r).to(device_) / 255.0;
  return ((x - mean_) / std_).contiguous();
}

torch::Tensor Clip::embed_image(const torch::Tensor& hwc_uint8) const {
  return encode_pixels(preprocess(hwc_uint8));
}

}  // namespace styleclip
