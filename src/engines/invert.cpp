// Inversion by optimisation: see include/styleclip/engines/invert.h.
#include <styleclip/engines/invert.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>

#include <chrono>
#include <cmath>

#include <torch/optim/adam.h>

namespace styleclip {

nlohmann::json InvertOptions::to_json() const {
  return {{"steps", steps},
          {"lr", lr},
          {"pixel_lambda", pixel_lambda},
          {"clip_lambda", clip_lambda},
          {"lpips_lambda", lpips_lambda},
          {"precision", to_string(precision)}};
}

void validate(const InvertOptions& o) {
  if (o.steps < 1)
    throw usage_error("invalid --steps " + std::to_string(o.steps) + ": must be at least 1");
  if (!(o.lr > 0) || !std::isfinite(o.lr))
    throw usage_error("invalid --lr: must be a positive number");
  if (!(o.pixel_lambda >= 0) || !(o.clip_lambda >= 0) || !(o.lpips_lambda >= 0) ||
      !std::isfinite(o.pixel_lambda) || !std::isfinite(o.clip_lambda) ||
      !std::isfinite(o.lpips_lambda)) {
    throw usage_error(
        "invalid --pixel-lambda/--clip-lambda/--lpips-lambda: must be zero or positive");
  }
  if (o.pixel_lambda == 0 && o.clip_lambda == 0 && o.lpips_lambda == 0) {
    throw usage_error(
        "--pixel-lambda, --clip-lambda and --lpips-lambda are all 0: nothing to match");
  }
}

torch::Tensor psnr(const torch::Tensor& images, const torch::Tensor& targets) {
  const auto mse = (images - targets).pow(2).flatten(1).mean(1).clamp_min(1e-12);
  return 10.0 * torch::log10(4.0 / mse);  // peak-to-peak 2 in [-1, 1]
}

InvertResult invert(const Generator& gen, const Clip* clip, const torch::Tensor& targets,
                    const torch::Tensor& start, const InvertOptions& o,
                    const std::function<void(int, int, double)>& progress) {
  return invert(gen, clip, nullptr, targets, start, o, progress);
}

InvertResult invert(const Generator& gen, const Clip* clip, const Lpips* lpips,
                    const torch::Tensor& targets, const torch::Tensor& start,
                    const InvertOptions& o, const std::function<void(int, int, double)>& progress) {
  validate(o);
  const auto& info = gen.info();
  if (targets.dim() != 4 || targets.size(1) != 3 || targets.size(2) != info.resolution ||
      targets.size(3) != info.resolution) {
    throw input_error("images to invert must be [N, 3, " + std::to_string(info.resolution) + ", " +
                      std::to_string(info.resolution) + "] for this generator");
  }
  const bool use_lpips = lpips != nullptr && o.lpips_lambda > 0;
  // The perceptual term is LPIPS when there is a model (and its weight is not 0), else CLIP.
  if (o.pixel_lambda == 0 && !use_lpips && o.clip_lambda == 0) {
    throw usage_error("--pixel-lambda is 0 and no perceptual term is on: nothing to match");
  }
  if (!use_lpips && o.clip_lambda > 0 && clip == nullptr) {
    throw usage_error("--clip-lambda needs the bundle's CLIP model (or use --clip-lambda 0)");
  }
  const auto dev = gen.device();
  const PrecisionScope precision(o.precision, dev);
  const auto x = targets.to(dev).to(torch::kFloat32).detach();
  const int64_t n = x.size(0);
  torch::Tensor w0 = start.defined() ? start.to(dev).to(torch::kFloat32).detach()
                                     : gen.broadcast(gen.w_avg().unsqueeze(0)).expand({n, -1, -1});
  gen.check_wplus(w0, "start latent");
  auto w = w0.clone().contiguous().requires_grad_(true);

  std::optional<ClipLoss> clip_loss;
  torch::Tensor target_features;
  if (!use_lpips && o.clip_lambda > 0) {
    clip_loss.emplace(*clip, info.resolution, ClipInput::kRaw);
    torch::NoGradGuard no_grad;
    target_features = clip_loss->embed(x);
  }
  InvertResult res;
  {
    torch::NoGradGuard no_grad;
    const auto p = psnr(gen.synthesis(w0), x).cpu();
    for (int64_t i = 0; i < n; ++i) res.psnr_before.push_back(p[i].item<double>());
  }
  torch::optim::Adam adam({w}, torch::optim::AdamOptions(o.lr).betas({0.9, 0.999}).eps(1e-8));
  auto& group = static_cast<torch::optim::AdamOptions&>(adam.param_groups()[0].options());
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < o.steps; ++step) {
    group.lr(optimize_lr(step, o.steps, o.lr));
    adam.zero_grad();
    const auto img = gen.synthesis(w);
    auto loss = o.pixel_lambda * (img - x).pow(2).flatten(1).mean(1);
    if (clip_loss) loss = loss + o.clip_lambda * (*clip_loss)(img, target_features);
    if (use_lpips) loss = loss + o.lpips_lambda * lpips->distance(img, x);
    const auto total = loss.sum();
    total.backward();
    adam.step();
    if (progress || step + 1 == o.steps || step % 10 == 0) {
      const double mean = total.item<double>() / double(n);
      res.loss_history.push_back(mean);
      if (progress) progress(step + 1, o.steps, mean);
    }
  }
  synchronize_device(dev);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  torch::NoGradGuard no_grad;
  res.ws = w.detach();
  res.images = gen.synthesis(res.ws);
  const auto p = psnr(res.images, x).cpu();
  for (int64_t i = 0; i < n; ++i) res.psnr_after.push_back(p[i].item<double>());
  return res;
}

}  // namespace styleclip
