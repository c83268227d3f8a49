// Engine 3 behind the Engine interface: global style-space directions, s + α·Δs with channels
// chosen by relevance β (global_directions.h, docs/algorithms.md §3).
#include <cstdio>

#include <chrono>

#include <torch/torch.h>

#include <styleclip/engines/engine.h>
#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>

#include "timing.h"

namespace styleclip {
namespace {
using nlohmann::json;

/// α when --strength is not given: the reference's Colab value.
constexpr double kDefaultStrength = 4.1;

std::string fixed3(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", x);
  return buf;
}

bool image_pair(const EngineSettings& s) {
  return s.has("--target-image") || s.has("--neutral-image");
}

/// β from --threshold: a number in [0, 1], or nullopt for "auto".
std::optional<double> parse_threshold(const EngineSettings& s) {
  const auto t = s.text("--threshold", "0.15");
  if (t == "auto") return std::nullopt;
  double beta = 0;
  try {
    size_t used = 0;
    beta = std::stod(t, &used);
    if (used != t.size()) throw std::invalid_argument(t);
  } catch (const std::exception&) {
    throw usage_error("invalid --threshold '" + t + "': expected a number in [0, 1] or auto");
  }
  if (!(beta >= 0.0 && beta <= 1.0)) {
    throw usage_error("invalid --threshold '" + t +
                      "': must be in [0, 1] (relevances are cosines)");
  }
  return beta;
}

void check_settings(const EngineSettings& s) {
  if (image_pair(s) && (!s.has("--target-image") || !s.has("--neutral-image"))) {
    throw usage_error("--target-image and --neutral-image go together");
  }
  for (const char* name : {"--target-image", "--neutral-image"}) {
    if (s.has(name) && !s.image(name).defined()) {  // a library caller gave the path only
      throw usage_error(std::string(name) +
                        ": the picture's pixels are missing (EngineSettings::set_image)");
    }
  }
  if (!image_pair(s) && s.text("--neutral", "").find_first_not_of(" \t\r\n") == std::string::npos) {
    throw usage_error(
        "--method global needs --neutral TEXT (what the image shows now, e.g. \"face\")");
  }
  parse_threshold(s);
  (void)s.number("--strength");
  parse_sweep(s.text("--strength-sweep", ""), "--strength-sweep");
  const auto spec = s.text("--threshold-sweep", "");
  for (const double b : parse_sweep(spec, "--threshold-sweep")) {
    if (!(b >= 0.0 && b <= 1.0))
      throw usage_error("invalid --threshold-sweep '" + spec + "': values must be in [0, 1]");
  }
}

class GlobalEngine final : public Engine {
 public:
  GlobalEngine(const EngineModels& m, const EngineSettings& s) : m_(m), s_(s) {
    check_settings(s);
    stats_ = GlobalStats::load(m.bundle->file("global_stats"), m.generator->info());
    stats_.directions = stats_.directions.to(m.device);
    beta_ = parse_threshold(s);
    strength_ = s.number("--strength", kDefaultStrength);
    strengths_ = parse_sweep(s.text("--strength-sweep", ""), "--strength-sweep");
    thresholds_ = parse_sweep(s.text("--threshold-sweep", ""), "--threshold-sweep");
    clip_input_ = parse_clip_input(s.text("--clip-input", "raw"));
  }

  json prepare(const std::string& prompt, const EngineHooks& hooks) override {
    torch::NoGradGuard no_grad;
    const auto& info = m_.generator->info();
    const bool pair = image_pair(s_);
    const auto neutral = s_.text("--neutral", "");
    const bool templates = !s_.flag("--no-templates");
    text_ = m_.clip->encode_text({prompt.empty() ? std::string(" ") : prompt});
    dt_ = pair ? embedding_direction(m_.clip->embed_image(s_.image("--target-image")),
                                     m_.clip->embed_image(s_.image("--neutral-image")))
               : text_direction(*m_.clip, prompt, neutral, templates);
    const double b = beta_ ? *beta_ : auto_threshold(stats_, info, dt_);
    edit_ = global_delta(stats_, info, dt_, b);
    if (hooks.log) {
      hooks.log(LogLevel::kInfo,
                "global direction '" + prompt + "': " + std::to_string(edit_.channels) + " of " +
                    std::to_string(stats_.directions.size(0)) + " channels pass threshold " +
                    fixed3(b) + " (max relevance " + fixed3(edit_.max_relevance) + ")");
      if (edit_.channels == 0) {
        hooks.log(LogLevel::kError,
                  "no channel passes --threshold " + fixed3(b) +
                      ": the images are returned unchanged (lower the threshold; the largest "
                      "relevance is " +
                      fixed3(edit_.max_relevance) + ")");
      } else if (edit_.channels < 10) {
        hooks.log(LogLevel::kWarning, "only " + std::to_string(edit_.channels) +
                                          " channels pass the threshold: the edit will be weak "
                                          "(lower --threshold)");
      }
    }
    json options{{"neutral", neutral},
                 {"strength", strength_},
                 {"threshold", b},
                 {"threshold_requested", s_.text("--threshold", "0.15")},
                 {"templates", templates && !pair},
                 {"channels", edit_.channels},
                 {"max_relevance", edit_.max_relevance}};
    if (pair) {
      options["target_image"] = s_.text("--target-image", "");
      options["neutral_image"] = s_.text("--neutral-image", "");
    }
    return options;
  }

  EditResult edit(const torch::Tensor& ws, const EngineHooks&) override {
    const auto t0 = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    const auto& gen = *m_.generator;
    EditResult r;
    const auto s = gen.styles(ws);
    r.before = gen.synthesis_from_styles(s);
    r.styles = apply_delta(s, edit_, strength_);
    r.after = edit_.channels > 0 ? gen.synthesis_from_styles(r.styles) : r.before;
    r.metrics = judge_rows(*m_.clip, gen.info().resolution, clip_input_, m_.identity, text_,
                           r.before, r.after);
    for (auto& row : r.metrics) row["channels"] = edit_.channels;
    r.errors.assign(r.metrics.size(),
                    edit_.channels > 0 ? "" : "no channel passed the threshold: image unchanged");
    r.timing = {{"batch_seconds", seconds_since(t0)}, {"batch_size", ws.size(0)}};
    return r;
  }

  std::vector<Sweep> sweeps(const torch::Tensor& ws) override {
    if (strengths_.empty() && thresholds_.empty()) return {};
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    const auto& gen = *m_.generator;
    const auto s = gen.styles(ws);
    std::vector<Sweep> out;
    if (!strengths_.empty()) {
      Sweep sw{"strength", strengths_, {}, true};
      for (const double a : strengths_)
        sw.images.push_back(gen.synthesis_from_styles(apply_delta(s, edit_, a)));
      out.push_back(std::move(sw));
    }
    if (!thresholds_.empty()) {
      Sweep sw{"threshold", thresholds_, {}, false};
      for (const double b : thresholds_) {
        sw.images.push_back(gen.synthesis_from_styles(
            apply_delta(s, global_delta(stats_, gen.info(), dt_, b), strength_)));
      }
      out.push_back(std::move(sw));
    }
    return out;
  }

 private:
  EngineModels m_;
  EngineSettings s_;
  GlobalStats stats_;
  std::optional<double> beta_;
  double strength_ = kDefaultStrength;
  std::vector<double> strengths_, thresholds_;
  ClipInput clip_input_ = ClipInput::kRaw;
  torch::Tensor text_, dt_;
  GlobalEdit edit_;
};

}  // namespace

EngineInfo global_engine() {
  using K = EngineOption::Kind;
  EngineInfo e;
  e.name = "global";
  e.summary = "global style-space directions from a neutral and a target text (milliseconds)";
  e.options = {
      {"--neutral",
       K::kText,
       "what the image shows now, e.g. \"face\" (the target is --text)",
       "",
       {}},
      {"--strength",
       K::kNumber,
       "global: alpha, how far along the direction (default 4.1; negative reverses)",
       "",
       {}},
      clip_input_option(),
      {"--threshold", K::kText, "beta in [0, 1]: minimum channel relevance, or auto", "0.15", {}},
      {"--no-templates",
       K::kFlag,
       "use the raw sentences instead of the 79 prompt templates",
       "",
       {}},
      {"--target-image",
       K::kImage,
       "direction from an image pair instead of texts: the target image",
       "",
       {}},
      {"--neutral-image", K::kImage, "… and the neutral image", "", {}},
      {"--strength-sweep",
       K::kText,
       "FROM:TO:COUNT: also write a grid (and MP4) over strengths, e.g. -5:5:11",
       "",
       {}},
      {"--threshold-sweep",
       K::kText,
       "FROM:TO:COUNT: also write a grid over thresholds at --strength, e.g. 0.05:0.25:5",
       "",
       {}},
  };
  e.needs_prompt = [](const EngineSettings& s) { return !image_pair(s); };
  e.one_prompt_only = [](const EngineSettings& s) {
    return image_pair(s) ? std::string(
                               "--target-image/--neutral-image give one direction: give "
                               "at most one --text")
                         : std::string();
  };
  e.check = [](const EngineSettings& s, const Bundle& bundle, const torch::Device&) {
    check_settings(s);
    if (!bundle.has("global_stats")) {
      throw bundle_error(
          "model bundle '" + bundle.dir().string() +
          "' has no global-direction statistics: run styleclip global prepare --models " +
          bundle.dir().string());
    }
  };
  e.create = [](const EngineModels& m, const EngineSettings& s) -> std::unique_ptr<Engine> {
    return std::make_unique<GlobalEngine>(m, s);
  };
  return e;
}

}  // namespace styleclip
