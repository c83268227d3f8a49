#include "inputs.h"

#include <cstdio>
#include <filesystem>

namespace styleclip::cli {

std::vector<InputItem> collect_inputs(const Generator& gen, const std::vector<uint64_t>& seeds,
                                      double truncation, const LatentFiles& latents) {
  torch::NoGradGuard no_grad;
  std::vector<InputItem> items;
  for (const auto seed : seeds) {
    char name[32];
    std::snprintf(name, sizeof name, "seed%04llu", static_cast<unsigned long long>(seed));
    const auto w = gen.truncate(gen.mapping(gen.seed_z(seed).unsqueeze(0)), truncation);
    items.push_back(
        {name, nlohmann::json{{"seed", seed}, {"truncation", truncation}}, gen.broadcast(w)});
  }
  for (const auto& [file, ws] : latents) {
    const auto stem = std::filesystem::path(file).stem().string();
    for (int64_t i = 0; i < ws.size(0); ++i) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03lld", static_cast<long long>(i));
      items.push_back(
          {ws.size(0) > 1 ? stem + suffix : stem,
           nlohmann::json{{"latent", std::filesystem::absolute(file).string()}, {"index", i}},
           ws.slice(0, i, i + 1).to(gen.device())});
    }
  }
  return items;
}

}  // namespace styleclip::cli
