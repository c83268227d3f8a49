#include <styleclip/workflows/inputs.h>

#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/numpy_random.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

namespace styleclip {
namespace fs = std::filesystem;

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

void require_some_readable(const std::vector<LoadedFile>& files, bool other_inputs) {
  if (other_inputs || files.empty()) return;
  const bool none =
      std::all_of(files.begin(), files.end(), [](const LoadedFile& f) { return !f.error.empty(); });
  if (!none) return;
  if (files.size() == 1) throw input_error(files.front().error);
  throw input_error("none of the " + std::to_string(files.size()) +
                    " inputs could be read; the first: " + files.front().error);
}

void mark_name_clashes(std::vector<InputItem>& items) {
  std::map<std::string, std::string> owner;
  for (auto& item : items) {
    if (!item.error.empty()) continue;
    const auto source = item.input.value(
        "latent", item.input.value("styles", item.input.value("photo", item.name)));
    const auto [it, fresh] = owner.emplace(item.name, source);
    if (!fresh && it->second != source) {
      item.error = "output name '" + item.name + "' is already used by '" + it->second +
                   "' (rename one of the inputs or run them separately)";
      item.ws = torch::Tensor();
    }
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
    items.push_back({name, std::move(input), gen.broadcast(w), {}, nullptr, {}});
  }
  for (const auto& f : files) {
    const auto path = std::filesystem::absolute(f.file.path).lexically_normal().string();
    if (!f.error.empty()) {
      items.push_back({f.file.name, nlohmann::json{{"latent", path}}, {}, f.error, nullptr, {}});
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
                       nullptr,
                       {}});
    }
  }
  return items;
}

std::vector<InputItem> collect_styles(const Generator& gen, const std::vector<InputFile>& files) {
  std::vector<InputItem> items;
  for (const auto& f : files) {
    const auto path = std::filesystem::absolute(f.path).lexically_normal().string();
    auto name = f.name;
    const std::string suffix = ".styles";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      name.resize(name.size() - suffix.size());
    }
    std::vector<torch::Tensor> styles;
    try {
      styles = load_styles(f.path, gen.info().style_dims);
    } catch (const Error& e) {
      items.push_back({name, nlohmann::json{{"styles", path}}, {}, e.what(), nullptr, {}});
      continue;
    }
    const int64_t rows = styles.front().size(0);
    for (int64_t i = 0; i < rows; ++i) {
      char suffix_k[32];
      std::snprintf(suffix_k, sizeof suffix_k, "_%03lld", static_cast<long long>(i));
      InputItem item{rows > 1 ? name + suffix_k : name,
                     nlohmann::json{{"styles", path}, {"index", i}},
                     {},
                     {},
                     nullptr,
                     {}};
      for (const auto& t : styles) item.styles.push_back(t.slice(0, i, i + 1).to(gen.device()));
      items.push_back(std::move(item));
    }
  }
  return items;
}

std::vector<uint64_t> parse_seeds(const std::string& spec) {
  const auto bad = [&]() {
    return usage_error("invalid --seed '" + spec +
                       "': expected N, N-M or a comma list such as 1,4,9-11");
  };
  std::vector<uint64_t> seeds;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789-") != std::string::npos) throw bad();
    const auto dash = item.find('-');
    try {
      if (dash == std::string::npos) {
        seeds.push_back(std::stoull(item));
      } else {
        const auto a = std::stoull(item.substr(0, dash));
        const auto b = std::stoull(item.substr(dash + 1));
        if (b < a || b - a > 100000) throw bad();
        for (auto s = a; s <= b; ++s) seeds.push_back(s);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception&) {
      throw bad();
    }
  }
  if (seeds.empty()) throw bad();
  return seeds;
}

void check_seeds(const std::vector<uint64_t>& seeds, const GeneratorInfo& info,
                 const fs::path& models) {
  if (info.seed_convention != SeedConvention::kNumpyRandomState) return;
  for (const auto seed : seeds) {
    if (seed > kNumpyMaxSeed) {
      throw usage_error("invalid --seed " + std::to_string(seed) + ": model bundle '" +
                        models.string() +
                        "' draws z as NVIDIA's tools do, with numpy's RandomState, whose seeds are "
                        "0-" +
                        std::to_string(kNumpyMaxSeed));
    }
  }
}

std::optional<int64_t> check_class(const std::optional<int64_t>& flag, const GeneratorInfo& info,
                                   const fs::path& models, bool samples_z,
                                   const std::string& sampled_by) {
  const std::string bundle = "model bundle '" + models.string() + "'";
  if (info.c_dim == 0) {
    if (flag) {
      throw usage_error("--class " + std::to_string(*flag) + " given, but " + bundle +
                        " is unconditional (drop --class)");
    }
    return std::nullopt;
  }
  const std::string classes = bundle + " is conditional with " + std::to_string(info.c_dim) +
                              " classes (0-" + std::to_string(info.c_dim - 1) + ")";
  if (!samples_z) {
    if (flag) {
      throw usage_error("--class picks the class of latents sampled with " + sampled_by +
                        ", and nothing is sampled here (drop --class)");
    }
    return std::nullopt;
  }
  if (!flag) throw usage_error("--class is required: " + classes);
  if (*flag < 0 || *flag >= info.c_dim) {
    throw usage_error("invalid --class " + std::to_string(*flag) + ": " + classes);
  }
  return flag;
}

nlohmann::json InputTransform::to_json() const {
  return {{"translate", {x, y}}, {"rotate", degrees}};
}

InputTransform check_input_transform(const std::string& translate, double rotate,
                                     const GeneratorInfo& info) {
  InputTransform t;
  t.degrees = rotate;
  if (!translate.empty()) {
    const auto comma = translate.find(',');
    const auto number = [&](const std::string& text, double& out) {
      try {
        size_t used = 0;
        out = std::stod(text, &used);
        return used == text.size() && std::isfinite(out);
      } catch (const std::exception&) {
        return false;
      }
    };
    if (comma == std::string::npos || !number(translate.substr(0, comma), t.x) ||
        !number(translate.substr(comma + 1), t.y)) {
      throw usage_error("invalid --translate '" + translate +
                        "': expected two numbers X,Y (e.g. 0.1,-0.05)");
    }
  }
  if (!std::isfinite(t.degrees)) throw usage_error("invalid --rotate: must be a finite number");
  if (t.any() && info.family != GeneratorFamily::kStyleGAN3) {
    throw usage_error(
        "--translate and --rotate move StyleGAN3's input; this bundle's generator is " +
        std::string(to_string(info.family)) + " (drop them)");
  }
  return t;
}

void apply_input_transform(Generator& gen, const InputTransform& t) {
  if (t.any()) gen.set_input_transform(t.x, t.y, t.degrees);
}

}  // namespace styleclip
