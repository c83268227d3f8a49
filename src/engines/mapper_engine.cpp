// Engine 2 behind the Engine interface: a trained latent mapper applied as w + strength·M(w)
// (mapper.h, docs/algorithms.md §2).
#include <filesystem>

#include <chrono>

#include <torch/torch.h>

#include <styleclip/engines/engine.h>
#include <styleclip/engines/mapper.h>
#include <styleclip/error.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>

#include "timing.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::string mapper_path(const EngineSettings& s) {
  const auto path = s.text("--mapper", "");
  if (path.empty()) {
    throw usage_error(
        "--method mapper needs --mapper FILE (train one with styleclip mapper train, or import "
        "StyleCLIP's with scripts/export_bundle.py --mapper)");
  }
  return path;
}

class MapperEngine final : public Engine {
 public:
  MapperEngine(const EngineModels& m, const EngineSettings& s) : m_(m) {
    path_ = mapper_path(s);
    const auto& info = m.generator->info();
    file_ = load_mapper(path_, info.num_ws, info.w_dim, m.device, to_string(info.family));
    file_.mapper->eval();
    strength_ = s.number("--strength", file_.strength);
    sweep_ = parse_sweep(s.text("--strength-sweep", ""), "--strength-sweep");
    clip_input_ = parse_clip_input(s.text("--clip-input", "raw"));
  }

  [[nodiscard]] std::string default_prompt() const override {
    return file_.meta.value("prompt", fs::path(path_).stem().string());
  }

  json prepare(const std::string& prompt, const EngineHooks&) override {
    torch::NoGradGuard no_grad;
    text_ = m_.clip->encode_text({prompt.empty() ? std::string(" ") : prompt});
    return {{"mapper", fs::absolute(path_).string()},
            {"strength", strength_},
            {"mapper_meta", file_.meta}};
  }

  EditResult edit(const torch::Tensor& ws, const EngineHooks&) override {
    // Many latents per generator call: no gradients, the models' precision.
    const auto t0 = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    EditResult r;
    r.before = m_.generator->synthesis(ws);
    r.ws = file_.mapper->apply(ws, strength_);
    r.after = m_.generator->synthesis(r.ws);
    r.metrics = judge_rows(*m_.clip, m_.generator->info().resolution, clip_input_, m_.identity,
                           text_, r.before, r.after);
    r.errors.assign(r.metrics.size(), "");
    const double secs = seconds_since(t0);
    r.timing = {{"batch_seconds", secs},
                {"batch_size", ws.size(0)},
                {"latents_per_second", double(ws.size(0)) / secs}};
    return r;
  }

  std::vector<Sweep> sweeps(const torch::Tensor& ws) override {
    if (sweep_.empty()) return {};
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(m_.precision, m_.device);
    Sweep sw{"strength", sweep_, {}, true};
    for (const double a : sweep_)
      sw.images.push_back(m_.generator->synthesis(file_.mapper->apply(ws, a)));
    return {sw};
  }

 private:
  EngineModels m_;
  std::string path_;
  MapperFile file_;
  double strength_ = 0.1;
  std::vector<double> sweep_;
  ClipInput clip_input_ = ClipInput::kRaw;
  torch::Tensor text_;
};

}  // namespace

EngineInfo mapper_engine() {
  using K = EngineOption::Kind;
  EngineInfo e;
  e.name = "mapper";
  e.summary = "a trained latent mapper: w + strength·M(w), many latents per second";
  e.options = {
      {"--mapper",
       K::kText,
       "the mapper file (styleclip mapper train, or an imported one)",
       "",
       {}},
      {"--strength", K::kNumber, "mapper: w + strength·M(w) (default: the mapper's, 0.1)", "", {}},
      clip_input_option(),
      {"--strength-sweep",
       K::kText,
       "FROM:TO:COUNT: also write a grid (and MP4) over strengths, e.g. -5:5:11",
       "",
       {}},
  };
  e.needs_prompt = [](const EngineSettings&) { return false; };
  e.one_prompt_only = [](const EngineSettings&) {
    return std::string("--method mapper edits toward its own prompt: give at most one --text");
  };
  e.check = [](const EngineSettings& s, const Bundle&, const torch::Device&) {
    mapper_path(s);
    (void)s.number("--strength");
    parse_sweep(s.text("--strength-sweep", ""), "--strength-sweep");
  };
  e.create = [](const EngineModels& m, const EngineSettings& s) -> std::unique_ptr<Engine> {
    return std::make_unique<MapperEngine>(m, s);
  };
  return e;
}

}  // namespace styleclip
