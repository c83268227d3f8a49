#include "inputs.h"

#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>

#include <cstdio>
#include <filesystem>

namespace styleclip::cli {

std::vector<LoadedFile> load_latent_files(const std::vector<InputFile>& files, int64_t num_ws,
                                          int64_t w_dim) {
  std::vector<LoadedFile> out;
  for (const auto& f : files) {
    LoadedFile lf{f, {}, {}};
    try {
      lf.ws = load_latents(f.path, num_ws, w_dim);
    } catch (const Error& e) {
      lf.error = e.what();
    }
    out.push_back(std::move(lf));
  }
  return out;
}

void require_all_readable(const std::vector<LoadedFile>& files) {
  for (const auto& f : files) {
    if (!f.error.empty()) throw input_error(f.error);
  }
}

std::vector<InputItem> collect_inputs(const Generator& gen, const std::vector<uint64_t>& seeds,
                                      double truncation, std::optional<int64_t> class_index,
                                      const std::vector<LoadedFile>& files) {
  torch::NoGradGuard no_grad;
  std::vector<InputItem> items;
  const auto label = gen.class_label(class_index, 1);
  for (const auto seed : seeds) {
    char name[32];
    std::snprintf(name, sizeof name, "seed%04llu", static_cast<unsigned long long>(seed));
    const auto w = gen.truncate(gen.mapping(gen.seed_z(seed).unsqueeze(0), label), truncation);
    nlohmann::json input{{"seed", seed}, {"truncation", truncation}};
    if (class_index) input["class"] = *class_index;
    items.push_back({name, std::move(input), gen.broadcast(w), {}, nullptr});
  }
  for (const auto& f : files) {
    const auto path = std::filesystem::absolute(f.file.path).lexically_normal().string();
    if (!f.error.empty()) {
      items.push_back({f.file.name, nlohmann::json{{"latent", path}}, {}, f.error, nullptr});
      continue;
    }
    const auto& ws = f.ws;
    for (int64_t i = 0; i < ws.size(0); ++i) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03lld", static_cast<long long>(i));
      items.push_back({ws.size(0) > 1 ? f.file.name + suffix : f.file.name,
                       nlohmann::json{{"latent", path}, {"index", i}},
                       ws.slice(0, i, i + 1).to(gen.device()),
                       {},
                       nullptr});
    }
  }
  return items;
}

}  // namespace styleclip::cli
