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

/// α when --strength is not given: the reference's Colab value; β when --threshold is not.
constexpr double kDefaultStrength = 4.1;
constexpr const char* kDefaultStrengthText = "4.1";
constexpr const char* kDefaultThreshold = "0.15";

std::string fixed3(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", x);
  return buf;
}

bool image_pair(const EngineSettings& s) {
  return s.has("--target-image") || s.has("--neutral-image");
}

/// β from one --threshold value `t` (all of it: `spec`): a number in [0, 1], or nullopt for
/// "auto".
std::optional<double> parse_beta(const std::string& t, const std::string& spec) {
  if (t == "auto") return std::nullopt;
  double beta = 0;
  try {
    size_t used = 0;
    beta = std::stod(t, &used);
    if (used != t.size()) throw std::invalid_argument(t);
  } catch (const std::exception&) {
    throw usage_error(
        "invalid --threshold '" + spec + "': expected a number in [0, 1] or auto" +
        (spec.find(',') != std::string::npos ? " (one per --text with --combine)" : ""));
  }
  if (!(beta >= 0.0 && beta <= 1.0)) {
    throw usage_error("invalid --threshold '" + spec +
                      "': must be in [0, 1] (relevances are cosines)");
  }
  return beta;
}

std::optional<double> parse_threshold(const EngineSettings& s) {
  const auto t = s.text("--threshold", kDefaultThreshold);
  return parse_beta(t, t);
}

/// A combined edit's per-prompt values of `option`: one for all, or one per prompt.
std::vector<std::string> per_prompt(const EngineSettings& s, const std::string& option,
                                    size_t prompts, const std::string& fallback) {
  auto v = s.items(option);
  if (v.empty()) v.push_back(fallback);
  if (v.size() == 1) v.assign(prompts, v.front());
  if (v.size() != prompts) {
    throw usage_error("invalid " + option + " '" + s.text(option, "") +
                      "': give one value for all " + std::to_string(prompts) +
                      " --text, or one for each");
  }
  return v;
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
  if (s.flag("--combine")) {
    if (image_pair(s)) {
      throw usage_error(
          "--combine joins the directions of several --text: leave out --target-image and "
          "--neutral-image");
    }
    if (s.has("--strength-sweep") || s.has("--threshold-sweep")) {
      throw usage_error(
          "--strength-sweep and --threshold-sweep vary one direction: leave out --combine");
    }
    const auto spec = s.text("--threshold", kDefaultThreshold);
    for (const auto& t : s.items("--threshold")) parse_beta(t, spec);
    for (const auto& a : s.items("--strength")) parse_finite("--strength", a);
    return;
  }
  if (s.text("--strength", "").find(',') != std::string::npos) {
    throw usage_error("invalid --strength '" + s.text("--strength", "") +
                      "': one value per --text needs --combine");
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
    if (!s.flag("--combine")) {
      beta_ = parse_threshold(s);
      strength_ = s.number("--strength", kDefaultStrength);
    }
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
    log_direction(hooks, prompt, edit_, b);
    json options{{"neutral", neutral},
                 {"strength", strength_},
                 {"threshold", b},
                 {"threshold_requested", s_.text("--threshold", kDefaultThreshold)},
                 {"templates", templates && !pair},
                 {"channels", edit_.channels},
                 {"max_relevance", edit_.max_relevance}};
    if (pair) {
      options["target_image"] = s_.text("--target-image", "");
      options["neutral_image"] = s_.text("--neutral-image", "");
    }
    return options;
  }

  /// One edit along every prompt's direction: Δs = Σ α_i·Δs_i, each Δs_i with its own β_i (the
  /// sum of the single edits' moves in S).
  json prepare_combined(const std::vector<std::string>& prompts,
                        const EngineHooks& hooks) override {
    torch::NoGradGuard no_grad;
    const auto& info = m_.generator->info();
    const auto strengths = per_prompt(s_, "--strength", prompts.size(), kDefaultStrengthText);
    const auto thresholds = per_prompt(s_, "--threshold", prompts.size(), kDefaultThreshold);
    const auto neutral = s_.text("--neutral", "");
    const bool templates = !s_.flag("--no-templates");
    GlobalEdit sum;
    json parts = json::array();
    std::string joined;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const double a = parse_finite("--strength", strengths[i]);
      const auto dt = text_direction(*m_.clip, prompts[i], neutral, templates);
      const auto beta = parse_beta(thresholds[i], thresholds[i]);
      const double b = beta ? *beta : auto_threshold(stats_, info, dt);
      const auto e = global_delta(stats_, info, dt, b);
      if (sum.delta.empty()) {
        for (const auto& d : e.delta) sum.delta.push_back(torch::zeros_like(d));
      }
      for (size_t l = 0; l < e.delta.size(); ++l) sum.delta[l] += a * e.delta[l];
      sum.max_relevance = std::max(sum.max_relevance, e.max_relevance);
      log_direction(hooks, prompts[i], e, b);
      parts.push_back({{"prompt", prompts[i]},
                       {"strength", a},
                       {"threshold", b},
                       {"threshold_requested", thresholds[i]},
                       {"channels", e.channels},
                       {"max_relevance", e.max_relevance}});
      joined += (i == 0 ? "" : " and ") + prompts[i];
    }
    for (const auto& d : sum.delta) sum.channels += d.ne(0).sum().item<int64_t>();
    edit_ = sum;
    strength_ = 1.0;  // the strengths are in the sum
    // CLIP similarity is measured against all the prompts in one sentence.
    text_ = m_.clip->encode_text({joined});
    return {{"neutral", neutral},
            {"combine", parts},
            {"templates", templates},
            {"channels", edit_.channels},
            {"max_relevance", edit_.max_relevance}};
  }

  EditResult edit(const torch::Tensor& ws, const EngineHooks& hooks) override {
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    return edit_styles(m_.generator->styles(ws), hooks);
  }

  EditResult edit_styles(const std::vector<torch::Tensor>& s, const EngineHooks&) override {
    const auto t0 = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    const auto& gen = *m_.generator;
    EditResult r;
    r.before = gen.synthesis_from_styles(s);
    r.styles = apply_delta(s, edit_, strength_);
    r.after = edit_.channels > 0 ? gen.synthesis_from_styles(r.styles) : r.before;
    r.metrics = judge_rows(*m_.clip, gen.info().resolution, clip_input_, m_.identity, text_,
                           r.before, r.after);
    for (auto& row : r.metrics) row["channels"] = edit_.channels;
    r.errors.assign(r.metrics.size(),
                    edit_.channels > 0 ? "" : "no channel passed the threshold: image unchanged");
    r.timing = {{"batch_seconds", seconds_since(t0)}, {"batch_size", s.front().size(0)}};
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
  /// How many channels a direction moves, on the log; a warning when few or none do.
  void log_direction(const EngineHooks& hooks, const std::string& prompt, const GlobalEdit& e,
                     double b) const {
    if (!hooks.log) return;
    hooks.log(LogLevel::kInfo, "global direction '" + prompt + "': " + std::to_string(e.channels) +
                                   " of " + std::to_string(stats_.directions.size(0)) +
                                   " channels pass threshold " + fixed3(b) + " (max relevance " +
                                   fixed3(e.max_relevance) + ")");
    if (e.channels == 0) {
      hooks.log(LogLevel::kError, "no channel passes --threshold " + fixed3(b) +
                                      ": the images are returned unchanged (lower the threshold; "
                                      "the largest relevance is " +
                                      fixed3(e.max_relevance) + ")");
    } else if (e.channels < 10) {
      hooks.log(LogLevel::kWarning, "only " + std::to_string(e.channels) +
                                        " channels pass the threshold: the edit will be weak "
                                        "(lower --threshold)");
    }
  }

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
       "global: alpha, how far along the direction (default 4.1; negative reverses; with "
       "--combine one per --text, e.g. 3,2)",
       "",
       {}},
      clip_input_option(),
      {"--threshold",
       K::kText,
       "beta in [0, 1]: minimum channel relevance, or auto (with --combine one per --text)",
       kDefaultThreshold,
       {}},
      {"--combine",
       K::kFlag,
       "with several --text: one output moved along every direction at once",
       "",
       {}},
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
  e.combines_prompts = [](const EngineSettings& s) { return s.flag("--combine"); };
  e.styles_refused = [](const EngineSettings&) { return std::string(); };
  e.check_combined = [](const EngineSettings& s, size_t prompts) {
    (void)per_prompt(s, "--strength", prompts, kDefaultStrengthText);
    (void)per_prompt(s, "--threshold", prompts, kDefaultThreshold);
  };
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
