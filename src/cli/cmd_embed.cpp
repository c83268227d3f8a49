// `styleclip embed` — CLIP embeddings of texts and images and their cosine similarities.
#include <styleclip/error.h>
#include <styleclip/io/image_io.h>
#include <styleclip/models/clip.h>
#include <styleclip/runtime.h>

#include <cstdio>
#include <iostream>

#include "common.h"

namespace styleclip::cli {
namespace {

struct EmbedOptions {
  std::string models;
  std::vector<std::string> texts;
  std::vector<std::string> images;
  std::string device = "auto";
  bool json = false;
};

int run_embed(const EmbedOptions& o) {
  if (o.texts.empty() && o.images.empty()) {
    throw usage_error("nothing to embed: give --text T and/or --image FILE");
  }
  // Decode every image first: an unreadable one fails before the model loads.
  std::vector<torch::Tensor> pixels;
  for (const auto& path : o.images) pixels.push_back(read_image_rgb(path));
  const auto device = parse_device(o.device);
  const auto bundle = Bundle::open(resolve_models(o.models));
  const Clip clip(bundle, device);

  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows;
  nlohmann::json items = nlohmann::json::array();
  if (!o.texts.empty()) {
    const auto e = clip.encode_text(o.texts).cpu();
    for (size_t i = 0; i < o.texts.size(); ++i) {
      rows.push_back(e[static_cast<int64_t>(i)]);
      items.push_back({{"kind", "text"}, {"value", o.texts[i]}});
    }
  }
  for (size_t i = 0; i < o.images.size(); ++i) {
    rows.push_back(clip.embed_image(pixels[i])[0].cpu());
    items.push_back({{"kind", "image"}, {"value", o.images[i]}});
  }
  const auto all = torch::stack(rows);
  const auto unit = all / all.norm(2, 1, true).clamp_min(1e-12);
  const auto cosine = unit.matmul(unit.t()).contiguous();
  const auto n = static_cast<int64_t>(rows.size());

  if (o.json) {
    for (int64_t i = 0; i < n; ++i) {
      const auto r = all[i].contiguous();
      items[static_cast<size_t>(i)]["embedding"] =
          std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
    }
    std::vector<std::vector<float>> cos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto r = cosine[i].contiguous();
      cos[static_cast<size_t>(i)].assign(r.data_ptr<float>(), r.data_ptr<float>() + n);
    }
    std::cout << nlohmann::json{{"items", items},
                                {"cosine", cos},
                                {"logit_scale", clip.logit_scale()}}
                     .dump()
              << "\n";
    return 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const auto& it = items[static_cast<size_t>(i)];
    std::printf("[%lld] %s '%s': norm %.4f, first values", static_cast<long long>(i),
                it["kind"].get<std::string>().c_str(), it["value"].get<std::string>().c_str(),
                all[i].norm().item<double>());
    for (int64_t k = 0; k < std::min<int64_t>(4, all.size(1)); ++k)
      std::printf(" %.4f", all[i][k].item<double>());
    std::printf("\n");
  }
  std::printf("cosine similarity\n");
  for (int64_t i = 0; i < n; ++i) {
    std::printf("[%lld]", static_cast<long long>(i));
    for (int64_t k = 0; k < n; ++k) std::printf(" %7.4f", cosine[i][k].item<double>());
    std::printf("\n");
  }
  return 0;
}

}  // namespace

void setup_embed(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<EmbedOptions>();
  auto* sub =
      app.add_subcommand("embed", "CLIP embeddings of texts and images, with cosine similarities");
  add_models_option(*sub, o->models);
  sub->add_option("--text", o->texts, "a text to embed (repeatable)");
  sub->add_option("--image", o->images,
                  "an image file to embed with CLIP's preprocessing (repeatable)");
  sub->add_option("--device", o->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  sub->add_flag("--json", o->json, "embeddings (unnormalised) and the cosine matrix as JSON");
  reg.push_back({sub, [o] { return run_embed(*o); }});
}

}  // namespace styleclip::cli
