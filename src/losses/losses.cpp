#include <styleclip/error.h>
#include <styleclip/losses/losses.h>

#include <numeric>

namespace styleclip {

ClipResize::ClipResize(int64_t in, int64_t out, torch::Device device) {
  const int64_t g = std::gcd(in, out);
  u_ = out / g;
  k_ = in / g;
  // Built on the CPU in double, then moved: a few hundred thousand entries at most.
  auto r = torch::zeros({out, in}, torch::kFloat64);
  auto acc = r.accessor<double, 2>();
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t y = k_ * i; y < k_ * i + k_; ++y) acc[i][y / u_] += 1.0 / double(k_);
  }
  r64_ = r.to(device);
  r_ = r64_.to(torch::kFloat32);
}

torch::Tensor ClipResize::operator()(const torch::Tensor& images) const {
  if (u_ == 1 && k_ == 1) return images;
  // R·X·Rᵀ over the last two dimensions: two small matmuls instead of a 49× larger image.
  const auto& r = images.scalar_type() == torch::kFloat64 ? r64_ : r_;
  return torch::matmul(torch::matmul(r, images), r.t());
}

ClipInput parse_clip_input(const std::string& s) {
  if (s == "raw") return ClipInput::kRaw;
  if (s == "normalized") return ClipInput::kNormalized;
  throw usage_error("invalid --clip-input '" + s + "': expected raw or normalized");
}

std::string to_string(ClipInput c) { return c == ClipInput::kRaw ? "raw" : "normalized"; }

ClipLoss::ClipLoss(const Clip& clip, int64_t image_size, ClipInput input)
    : clip_(clip), resize_(image_size, clip.info().image_resolution, clip.device()), input_(input) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(clip.device());
  const auto& info = clip.info();
  mean_ = torch::tensor(std::vector<float>(info.image_mean.begin(), info.image_mean.end()), opts)
              .view({1, 3, 1, 1});
  std_ = torch::tensor(std::vector<float>(info.image_std.begin(), info.image_std.end()), opts)
             .view({1, 3, 1, 1});
}

torch::Tensor ClipLoss::embed(const torch::Tensor& images) const {
  auto x = resize_(images.to(clip_.device()));
  if (input_ == ClipInput::kNormalized) x = ((x.clamp(-1.0, 1.0) + 1.0) * 0.5 - mean_) / std_;
  return clip_.encode_pixels(x);
}

torch::Tensor ClipLoss::similarity(const torch::Tensor& images,
                                   const torch::Tensor& text_embeddings) const {
  const auto img = embed(images);
  // The reference computes logits/100 with CLIP's logit scale of 100, i.e. the cosine.
  return torch::cosine_similarity(img, text_embeddings.to(img.device()).expand_as(img), 1, 1e-8);
}

torch::Tensor ClipLoss::operator()(const torch::Tensor& images,
                                   const torch::Tensor& text_embeddings) const {
  return 1.0 - similarity(images, text_embeddings);
}

torch::Tensor latent_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).pow(2).flatten(1).sum(1);
}

torch::Tensor latent_l2(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  TORCH_CHECK(a.size() == b.size() && !a.empty(), "latent_l2: lists differ in length");
  auto total = latent_l2(a[0], b[0]);
  for (size_t i = 1; i < a.size(); ++i) total = total + latent_l2(a[i], b[i]);
  return total;
}

IdentityLoss::IdentityLoss(const IdentityModel& model, const torch::Tensor& reference_images)
    : model_(model) {
  torch::NoGradGuard no_grad;
  reference_ = model_.features(reference_images).detach();
}

torch::Tensor IdentityLoss::similarity(const torch::Tensor& images) const {
  const auto f = model_.features(images);
  return (f * reference_.to(f.device())).sum(1);
}

}  // namespace styleclip
