// styleclip/engines/device_adam.h — Adam whose step count and learning rate live on the device.
//
// torch::optim::Adam keeps its step count on the host and passes the bias corrections to the
// kernels as host numbers. A CUDA graph records those numbers once, so replaying a captured step
// would repeat step 1's corrections forever. Here the count and the learning rate are device
// tensors and every quantity is computed by kernels: one step is a fixed sequence of kernels with
// no host values in it (what PyTorch's `Adam(capturable=True)` does). The update is LibTorch's
// Adam (Kingma & Ba 2015, Alg. 1; eps added after the bias-corrected square root, no weight
// decay, no AMSGrad), equal to torch::optim::Adam to float rounding (tests/unit/test_optimize.cpp).
#pragma once

#include <vector>

#include <torch/types.h>

namespace styleclip {

class DeviceAdam {
 public:
  /// `params` are leaves that require grad, all on one device; their state starts at zero.
  DeviceAdam(std::vector<torch::Tensor> params, double beta1 = 0.9, double beta2 = 0.999,
             double eps = 1e-8);

  /// Sets the learning rate of the next step (a fill of a device scalar, outside any capture).
  void set_lr(double lr);
  /// Zeroes the gradients in place (they keep their storage, which a captured graph refers to).
  void zero_grad();
  /// One Adam step from the parameters' gradients (a parameter without one is left alone).
  void step();

 private:
  std::vector<torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  torch::Tensor count_;  ///< steps taken, a float64 scalar on the device
  torch::Tensor lr_;     ///< a float64 scalar on the device
  double beta1_, beta2_, eps_;
};

}  // namespace styleclip
