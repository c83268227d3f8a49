#include <styleclip/error.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>
#include "script_module.h"

namespace styleclip {

struct IdentityModel::Impl {
  torch::jit::Module module;
};

IdentityModel::IdentityModel(const Bundle& bundle, torch::Device device)
    : impl_(std::make_shared<Impl>()), device_(device) {
  impl_->module = load_script_module(bundle.file("identity"), device, "identity model", {"embed"},
                                     "re-export it with scripts/export_bundle.py --identity CKPT");
  torch::NoGradGuard no_grad;
  try {
    (void)embed(torch::zeros({1, 3, 112, 112}, torch::TensorOptions().device(device)));
  } catch (const std::exception& e) {
    throw bundle_error("identity model '" + bundle.file("identity").string() +
                       "' failed a dry run on a 112x112 image (" + torch_message(e) + ")");
  }
}

torch::Tensor IdentityModel::embed(const torch::Tensor& input_112) const {
  return impl_->module.get_method("embed")({input_112.to(device_)}).toTensor();
}

torch::Tensor IdentityModel::features(const torch::Tensor& images) const {
  auto x = images.to(device_);
  if (x.size(2) != 256 || x.size(3) != 256) x = torch::adaptive_avg_pool2d(x, {256, 256});
  x = x.slice(2, 35, 223).slice(3, 32, 220);  // StyleCLIP's face crop in 256 px coordinates
  return embed(torch::adaptive_avg_pool2d(x, {112, 112}));
}

}  // namespace styleclip
