// Pivotal Tuning Inversion (pti.h; Roich et al. 2021, section 3).
#include <styleclip/engines/pti.h>

#include <chrono>
#include <cmath>
#include <fstream>

#include <torch/script.h>
#include <torch/torch.h>

#include <styleclip/engines/invert.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

namespace styleclip {
namespace fs = std::filesystem;

nlohmann::json PtiOptions::to_json() const {
  return {{"pti_steps", steps},
          {"pti_lr", lr},
          {"pti_lpips_lambda", lpips_lambda},
          {"pti_l2_lambda", l2_lambda}};
}

void validate(const PtiOptions& o) {
  if (o.steps < 1 || o.steps > 100000)
    throw usage_error("invalid --pti-steps: must be 1 to 100000");
  if (!(o.lr > 0 && std::isfinite(o.lr))) throw usage_error("invalid --pti-lr: must be positive");
  if (!(o.lpips_lambda >= 0 && o.l2_lambda >= 0) || o.lpips_lambda + o.l2_lambda == 0) {
    throw usage_error("invalid PTI loss weights: both zero or negative");
  }
}

PtiResult pivotal_tuning(const Generator& gen, const Lpips* lpips, const torch::Tensor& target,
                         const torch::Tensor& pivot, const PtiOptions& o,
                         const std::function<void(int, int, double)>& progress) {
  validate(o);
  gen.check_wplus(pivot, "PTI pivot");
  const auto t0 = std::chrono::steady_clock::now();
  const auto dev = gen.device();
  const auto x = target.to(dev).detach();
  const auto w = pivot.to(dev).detach();
  const bool use_lpips = lpips != nullptr && o.lpips_lambda > 0;
  const Generator tuned(gen, {});  // a private copy: the caller's generator is never touched
  std::vector<torch::Tensor> params;
  for (auto& [name, p] : tuned.parameters()) {
    p.requires_grad_(true);
    params.push_back(p);
  }
  torch::optim::Adam adam(params, torch::optim::AdamOptions(o.lr));
  const auto loss_of = [&](const torch::Tensor& img) {
    auto l = o.l2_lambda * (img - x).pow(2).mean();
    if (use_lpips) l = l + o.lpips_lambda * lpips->distance(img, x).mean();
    return l;
  };
  PtiResult r;
  {
    torch::NoGradGuard no_grad;
    r.image_pivot = gen.synthesis(w);
    r.psnr_pivot = psnr(r.image_pivot, x)[0].item<double>();
    if (lpips != nullptr) r.lpips_pivot = lpips->distance(r.image_pivot, x)[0].item<double>();
  }
  for (int step = 1; step <= o.steps; ++step) {
    adam.zero_grad();
    const auto loss = loss_of(tuned.synthesis(w));
    loss.backward();
    adam.step();
    // Reading the loss waits for a GPU: every step only when someone shows it, else every 10th
    // and the last (a NaN stays NaN, so it is still caught).
    if (progress || step % 10 == 0 || step == o.steps) {
      r.final_loss = loss.item<double>();
      if (!std::isfinite(r.final_loss)) {
        throw input_error("pivotal tuning: the loss became NaN or Inf by step " +
                          std::to_string(step) + " (try a smaller --pti-lr)");
      }
      if (progress) progress(step, o.steps, r.final_loss);
    }
  }
  torch::NoGradGuard no_grad;
  // The tensors tuning moved are those that got a gradient (a W+ pivot gives the mapping none).
  for (auto& [name, p] : tuned.parameters()) {
    p.requires_grad_(false);
    if (p.grad().defined()) r.weights.emplace(name, p.detach().cpu().clone());
  }
  r.image_tuned = tuned.synthesis(w);
  r.psnr_tuned = psnr(r.image_tuned, x)[0].item<double>();
  if (lpips != nullptr) r.lpips_tuned = lpips->distance(r.image_tuned, x)[0].item<double>();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void save_weights(const fs::path& path, const std::map<std::string, torch::Tensor>& weights) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [name, t] : weights) d.insert(name, t.detach().cpu().contiguous());
  const auto bytes = torch::jit::pickle_save(d);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

std::map<std::string, torch::Tensor> load_weights(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error("cannot read tuned weights '" + path.string() + "'");
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check_torch_archive(data, "cannot read tuned weights '" + path.string() + "'");
  std::map<std::string, torch::Tensor> out;
  try {
    const auto v = torch::jit::pickle_load(data);
    for (const auto& item : v.toGenericDict()) {
      out.emplace(item.key().toStringRef(), item.value().toTensor());
    }
  } catch (const std::exception& e) {
    throw input_error("tuned weights '" + path.string() + "' are not a dict of tensors (" +
                      torch_message(e) + ")");
  }
  return out;
}

}  // namespace styleclip
