// Engine 1 behind the Engine interface: latent optimisation (optimize.h, docs/algorithms.md §1).
#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include <styleclip/engines/engine.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/models/bundle.h>

#include "timing.h"

namespace styleclip {
namespace {
using nlohmann::json;

/// The identity weight when --id-lambda is not given: the reference Colab's 0.005 where the bundle
/// has an identity model, else off.
constexpr double kDefaultIdLambda = 0.005;

OptimizeOptions parse_options(const EngineSettings& s, bool has_identity) {
  OptimizeOptions o;
  const auto steps = s.integer("--steps", o.steps);
  const auto frames = s.integer("--frames", 0);
  // Far beyond any run, and well inside an int (the options are counts of steps).
  constexpr int64_t kMaxSteps = 100'000'000;
  if (steps > kMaxSteps || frames > kMaxSteps) {
    throw usage_error(std::string(steps > kMaxSteps ? "invalid --steps " : "invalid --frames ") +
                      std::to_string(steps > kMaxSteps ? steps : frames) + ": at most 100000000");
  }
  o.steps = static_cast<int>(std::max<int64_t>(steps, -1));
  o.lr = s.number("--lr", o.lr);
  o.l2_lambda = s.number("--l2-lambda", o.l2_lambda);
  o.id_lambda = s.number("--id-lambda", has_identity ? kDefaultIdLambda : 0.0);
  const auto mode = s.text("--mode", "edit");
  if (mode != "edit" && mode != "free")
    throw usage_error("invalid --mode '" + mode + "': expected edit or free");
  o.free_mode = mode == "free";
  const auto space = s.text("--space", "W+");
  if (space == "W+" || space == "w+") {
    o.space = LatentSpace::kWPlus;
  } else if (space == "S" || space == "s") {
    o.space = LatentSpace::kS;
  } else {
    throw usage_error("invalid --space '" + space + "': expected W+ or S");
  }
  o.clip_input = parse_clip_input(s.text("--clip-input", "raw"));
  o.frame_every = static_cast<int>(std::max<int64_t>(frames, -1));
  o.cuda_graph = s.flag("--cuda-graph");
  validate(o, has_identity);
  return o;
}

class OptimizeEngine final : public Engine {
 public:
  OptimizeEngine(const EngineModels& models, OptimizeOptions options, bool id_lambda_given)
      : m_(models), options_(options), id_lambda_given_(id_lambda_given) {
    options_.precision = models.precision;
  }

  json prepare(const std::string& prompt, const EngineHooks& hooks) override {
    if (!id_lambda_given_ && !told_identity_ && hooks.log) {
      hooks.log(LogLevel::kInfo,
                m_.identity != nullptr
                    ? "identity loss on (lambda 0.005, the reference's Colab value)"
                    : "identity loss off: the bundle has no identity model");
    }
    told_identity_ = true;
    torch::NoGradGuard no_grad;
    text_ = m_.clip->encode_text({prompt.empty() ? std::string(" ") : prompt});
    return options_.to_json();
  }

  EditResult edit(const torch::Tensor& ws, const EngineHooks& hooks) override {
    return run(ws, {}, hooks);
  }

  EditResult edit_styles(const std::vector<torch::Tensor>& styles,
                         const EngineHooks& hooks) override {
    return run(torch::Tensor(), styles, hooks);
  }

 private:
  /// From W+ `ws`, or from style codes when `ws` is undefined.
  EditResult run(const torch::Tensor& ws, const std::vector<torch::Tensor>& styles,
                 const EngineHooks& hooks) {
    const auto t0 = std::chrono::steady_clock::now();
    OptimizeCallbacks cb;
    cb.progress = hooks.progress;
    cb.should_stop = hooks.should_stop;
    if (options_.frame_every > 0) cb.frame = hooks.frame;
    const auto res =
        ws.defined()
            ? optimize(*m_.generator, *m_.clip, m_.identity, ws, text_, options_, cb)
            : optimize_styles(*m_.generator, *m_.clip, m_.identity, styles, text_, options_, cb);
    EditResult r;
    if (res.stopped) {
      r.stopped = true;
      return r;
    }
    r.before = res.images_before;
    r.after = res.images_after;
    if (options_.space == LatentSpace::kWPlus) {
      r.ws = res.ws;
    } else {
      r.styles = res.styles;
    }
    for (const auto& row : res.rows) {
      r.metrics.push_back(
          {{"clip_similarity_before", row.clip_before},
           {"clip_similarity_after", row.clip_after},
           {"identity_similarity", row.identity ? json(*row.identity) : json(nullptr)},
           {"loss", row.loss},
           {"loss_clip", row.loss_clip},
           {"loss_l2", row.loss_l2},
           {"loss_id", row.loss_id},
           {"steps_done", row.steps_done}});
      r.errors.push_back(row.ok ? "" : row.error);
    }
    r.timing = {{"steps_per_second", res.steps_per_second},
                {"batch_seconds", seconds_since(t0)},
                {"batch_size", res.images_before.size(0)}};
    return r;
  }

  EngineModels m_;
  OptimizeOptions options_;
  bool id_lambda_given_;
  bool told_identity_ = false;
  torch::Tensor text_;
};

}  // namespace

EngineInfo optimize_engine() {
  using K = EngineOption::Kind;
  EngineInfo e;
  e.name = "optimize";
  e.summary = "latent optimisation: Adam on each latent against a CLIP loss";
  e.options = {
      {"--steps", K::kInteger, "Adam steps", "300", {}},
      {"--lr",
       K::kNumber,
       "peak learning rate (5 % warm-up, cosine ramp-down over the last 25 %)",
       "0.1",
       {}},
      {"--l2-lambda", K::kNumber, "weight of the latent L2 term (a sum of squares)", "0.008", {}},
      {"--id-lambda",
       K::kNumber,
       "weight of the identity term (default 0.005 with an identity model, else 0)",
       "",
       {}},
      {"--mode",
       K::kText,
       "edit, or free (CLIP term only, from the average latent)",
       "edit",
       {"edit", "free"}},
      {"--space", K::kText, "W+ or S (the non-toRGB style channels)", "W+", {"W+", "S"}},
      clip_input_option(),
      {"--frames", K::kInteger, "write an image every K steps, and an MP4 of them", "0", {}},
      {"--cuda-graph",
       K::kFlag,
       "CUDA: replay one captured step as a CUDA graph (fewer kernel launches; same arithmetic)",
       "",
       {}},
  };
  e.takes_inputs = [](const EngineSettings& s) { return s.text("--mode", "edit") != "free"; };
  e.styles_refused = [](const EngineSettings& s) {
    const auto space = s.text("--space", "W+");
    return space == "S" || space == "s"
               ? std::string()
               : std::string("a style-space input (.styles.pt) is optimised in S: add --space S");
  };
  e.check = [](const EngineSettings& s, const Bundle& bundle, const torch::Device& device) {
    check_cuda_graph(parse_options(s, bundle.has("identity")), device);
  };
  e.create = [](const EngineModels& m, const EngineSettings& s) -> std::unique_ptr<Engine> {
    return std::make_unique<OptimizeEngine>(m, parse_options(s, m.identity != nullptr),
                                            s.has("--id-lambda"));
  };
  return e;
}

}  // namespace styleclip
