#include <styleclip/error.h>
#include <styleclip/models/encoder.h>
#include <styleclip/runtime.h>
#include "script_module.h"

#include <torch/nn/functional/upsampling.h>

namespace styleclip {

struct Encoder::Impl {
  torch::jit::Module module;
};

Encoder::Encoder(const Bundle& bundle, torch::Device device)
    : impl_(std::make_shared<Impl>()), device_(device) {
  const auto file = bundle.file("encoder");
  impl_->module = load_script_module(file, device, "encoder", {"encode"},
                                     "re-export it with scripts/export_bundle.py --encoder CKPT");
  const auto& g = bundle.generator();
  try {
    input_size_ = static_cast<int>(impl_->module.attr("input_size").toInt());
  } catch (const std::exception&) {
    throw bundle_error("encoder '" + file.string() +
                       "' has no input_size attribute: re-export it with "
                       "scripts/export_bundle.py --encoder CKPT");
  }
  torch::NoGradGuard no_grad;
  torch::Tensor w;
  try {
    w = encode(torch::zeros({1, 3, input_size_, input_size_}));
  } catch (const std::exception& e) {
    throw bundle_error("encoder '" + file.string() + "' failed a dry run on a " +
                       std::to_string(input_size_) + " px image (" + torch_message(e) + ")");
  }
  if (w.dim() != 3 || w.size(1) != g.num_ws || w.size(2) != g.w_dim) {
    throw bundle_error("encoder '" + file.string() + "' gives W+ " +
                       std::string(c10::str(w.sizes())) + " but the generator takes [N, " +
                       std::to_string(g.num_ws) + ", " + std::to_string(g.w_dim) +
                       "]: export the encoder trained for this generator");
  }
}

torch::Tensor Encoder::encode(const torch::Tensor& images) const {
  namespace F = torch::nn::functional;
  auto x = images.to(device_, torch::kFloat32);
  if (x.size(2) > input_size_ || x.size(3) > input_size_) {
    x = torch::adaptive_avg_pool2d(x, {input_size_, input_size_});
  } else if (x.size(2) != input_size_ || x.size(3) != input_size_) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{input_size_, input_size_})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  return impl_->module.get_method("encode")({x}).toTensor().to(torch::kFloat32);
}

}  // namespace styleclip
