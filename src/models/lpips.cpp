#include <styleclip/error.h>
#include <styleclip/models/lpips.h>
#include <styleclip/runtime.h>
#include "script_module.h"

namespace styleclip {

struct Lpips::Impl {
  torch::jit::Module module;
};

Lpips::Lpips(const Bundle& bundle, torch::Device device)
    : impl_(std::make_shared<Impl>()), device_(device) {
  const auto file = bundle.file("lpips");
  impl_->module = load_script_module(file, device, "LPIPS model", {"distance"},
                                     "re-export it with scripts/export_bundle.py --lpips");
  torch::NoGradGuard no_grad;
  try {
    const auto x = torch::zeros({1, 3, 32, 32});
    (void)distance(x, x);
  } catch (const std::exception& e) {
    throw bundle_error("LPIPS model '" + file.string() + "' failed a dry run on a 32 px image (" +
                       torch_message(e) + ")");
  }
}

torch::Tensor Lpips::distance(const torch::Tensor& a, const torch::Tensor& b) const {
  auto x = a.to(device_, torch::kFloat32);
  auto y = b.to(device_, torch::kFloat32);
  if (x.size(2) > 256 || x.size(3) > 256) {
    x = torch::adaptive_avg_pool2d(x, {256, 256});
    y = torch::adaptive_avg_pool2d(y, {256, 256});
  }
  return impl_->module.get_method("distance")({x, y}).toTensor().to(torch::kFloat32);
}

}  // namespace styleclip
