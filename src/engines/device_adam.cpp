#include <styleclip/engines/device_adam.h>
#include <styleclip/error.h>

#include <torch/torch.h>

namespace styleclip {

DeviceAdam::DeviceAdam(std::vector<torch::Tensor> params, double beta1, double beta2, double eps)
    : params_(std::move(params)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  if (params_.empty()) throw std::invalid_argument("DeviceAdam: no parameters");
  // float64, as torch::optim::Adam's host arithmetic: 1 − 0.999 is 1.3e-5 off in float32, and
  // Adam's sign-like steps turn such differences into visibly different results within ~20 steps.
  const auto opts = torch::TensorOptions().device(params_[0].device()).dtype(torch::kFloat64);
  count_ = torch::zeros({}, opts);
  lr_ = torch::zeros({}, opts);
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

void DeviceAdam::set_lr(double lr) { lr_.fill_(lr); }

void DeviceAdam::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

void DeviceAdam::step() {
  torch::NoGradGuard no_grad;
  count_.add_(1);
  // step size lr / (1 − β1^t) and the second moment's correction √(1 − β2^t), as device scalars.
  const auto neg_step_size = -lr_ / (1 - torch::pow(beta1_, count_));
  const auto correction2 = torch::sqrt(1 - torch::pow(beta2_, count_));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const auto& g = p.grad();
    if (!g.defined()) continue;
    exp_avg_[i].mul_(beta1_).add_(g, 1 - beta1_);
    exp_avg_sq_[i].mul_(beta2_).addcmul_(g, g, 1 - beta2_);
    const auto denom = (exp_avg_sq_[i].sqrt() / correction2).add_(eps_);
    // p += (−step)·m / denom, in the order of LibTorch's CPU addcdiv_ kernel (what Adam calls).
    p.add_(exp_avg_[i] * neg_step_size / denom);
  }
}

}  // namespace styleclip
