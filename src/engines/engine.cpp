// The engine registry, option values, and what every engine shares (engine.h).
#include <styleclip/engines/engine.h>

#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include <styleclip/engines/global_directions.h>
#include <styleclip/engines/mapper.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/losses/losses.h>

namespace styleclip {
using nlohmann::json;

const std::vector<EngineInfo>& engines() {
  // The one registration point: a new engine adds its line here (the order is the help's).
  static const std::vector<EngineInfo> all = {optimize_engine(), mapper_engine(), global_engine()};
  return all;
}

const EngineInfo& find_engine(const std::string& name) {
  std::string names;
  const auto& all = engines();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].name == name) return all[i];
    names += (i == 0 ? "" : (i + 1 == all.size() ? " or " : ", ")) + all[i].name;
  }
  throw usage_error("invalid --method '" + name + "': expected " + names);
}

void EngineSettings::set_image(const std::string& name, torch::Tensor pixels) {
  images_[name] = std::move(pixels);
}

bool EngineSettings::has(const std::string& name) const {
  return text_.count(name) > 0 || images_.count(name) > 0;
}

double parse_finite(const std::string& option, const std::string& v) {
  double x = 0;
  try {
    size_t used = 0;
    x = std::stod(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
  } catch (const std::exception&) {
    throw usage_error(option + ": '" + v + "' is not a number");
  }
  if (!std::isfinite(x)) throw usage_error(option + ": must be a finite number, found '" + v + "'");
  return x;
}

std::optional<double> EngineSettings::number(const std::string& name) const {
  const auto it = text_.find(name);
  if (it == text_.end()) return std::nullopt;
  return parse_finite(name, it->second);
}

std::vector<std::string> EngineSettings::items(const std::string& name) const {
  std::vector<std::string> out;
  const auto it = text_.find(name);
  if (it == text_.end()) return out;
  std::string item;
  std::stringstream ss(it->second);
  while (std::getline(ss, item, ',')) out.push_back(item);
  if (!it->second.empty() && it->second.back() == ',') out.emplace_back();
  return out;
}

EditResult Engine::edit_styles(const std::vector<torch::Tensor>& styles, const EngineHooks& hooks) {
  (void)styles;
  (void)hooks;
  throw usage_error(
      "this engine edits W+ latents: a style-space input (.styles.pt) is edited by --method "
      "global or --method optimize --space S");
}

json Engine::prepare_combined(const std::vector<std::string>& prompts, const EngineHooks& hooks) {
  (void)prompts;
  (void)hooks;
  throw usage_error("this engine edits toward one prompt at a time: leave out --combine");
}

double EngineSettings::number(const std::string& name, double fallback) const {
  return number(name).value_or(fallback);
}

int64_t EngineSettings::integer(const std::string& name, int64_t fallback) const {
  const auto it = text_.find(name);
  if (it == text_.end()) return fallback;
  const auto& v = it->second;
  try {
    size_t used = 0;
    const auto x = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw usage_error(name + ": '" + v + "' is not a whole number");
  }
}

std::string EngineSettings::text(const std::string& name, const std::string& fallback) const {
  const auto it = text_.find(name);
  return it == text_.end() ? fallback : it->second;
}

bool EngineSettings::flag(const std::string& name) const {
  const auto it = text_.find(name);
  return it != text_.end() && it->second != "false" && it->second != "0";
}

torch::Tensor EngineSettings::image(const std::string& name) const {
  const auto it = images_.find(name);
  return it == images_.end() ? torch::Tensor() : it->second;
}

std::vector<std::string> EngineSettings::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : text_) out.push_back(k);
  for (const auto& [k, v] : images_) {
    if (text_.count(k) == 0) out.push_back(k);
  }
  return out;
}

std::vector<json> judge_rows(const Clip& clip, int64_t resolution, ClipInput input,
                             const IdentityModel* identity, const torch::Tensor& text,
                             const torch::Tensor& before, const torch::Tensor& after) {
  torch::NoGradGuard no_grad;
  const ClipLoss judge(clip, resolution, input);
  const auto b = judge.similarity(before, text).cpu();
  const auto a = judge.similarity(after, text).cpu();
  torch::Tensor ident;
  if (identity != nullptr) ident = IdentityLoss(*identity, before).similarity(after).cpu();
  std::vector<json> out;
  for (int64_t k = 0; k < before.size(0); ++k) {
    out.push_back(
        {{"clip_similarity_before", b[k].item<double>()},
         {"clip_similarity_after", a[k].item<double>()},
         {"identity_similarity", ident.defined() ? json(ident[k].item<double>()) : json(nullptr)}});
  }
  return out;
}

EngineOption clip_input_option() {
  return {"--clip-input",
          EngineOption::Kind::kText,
          "raw: the [-1, 1] image as the reference feeds CLIP; normalized: CLIP's mean/std",
          "raw",
          {"raw", "normalized"}};
}

std::vector<double> parse_sweep(const std::string& spec, const std::string& option) {
  if (spec.empty()) return {};
  const auto bad = [&]() {
    return usage_error("invalid " + option + " '" + spec +
                       "': expected FROM:TO:COUNT, e.g. -5:5:11");
  };
  const auto c1 = spec.find(':');
  const auto c2 = spec.find(':', c1 == std::string::npos ? c1 : c1 + 1);
  if (c1 == std::string::npos || c2 == std::string::npos) throw bad();
  double a = 0;
  double b = 0;
  long n = 0;
  try {
    size_t u1 = 0;
    size_t u2 = 0;
    size_t u3 = 0;
    a = std::stod(spec.substr(0, c1), &u1);
    b = std::stod(spec.substr(c1 + 1, c2 - c1 - 1), &u2);
    n = std::stol(spec.substr(c2 + 1), &u3);
    if (u1 != c1 || u2 != c2 - c1 - 1 || u3 != spec.size() - c2 - 1) throw bad();
  } catch (const std::exception&) {
    throw bad();
  }
  if (n < 2 || n > 1000 || !std::isfinite(a) || !std::isfinite(b)) throw bad();
  std::vector<double> out;
  for (long i = 0; i < n; ++i) out.push_back(a + (b - a) * double(i) / double(n - 1));
  return out;
}

}  // namespace styleclip
