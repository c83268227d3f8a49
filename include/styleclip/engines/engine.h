// styleclip/engines/engine.h — the one shape every editing engine has.
//
// An engine turns a batch of W+ latents into edited images (and latents or styles) toward a
// prompt. It declares its own options, checks them once (before any model loads), prepares per
// prompt (a text embedding, a direction, a mapper) and edits batches. Front ends — the CLI's
// `edit`, the batch workflow, an embedding program — know engines only through this header, so a
// new engine is one header, one source and one line in `engines()` (src/engines/engine.cpp;
// docs/architecture.md).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/runtime.h>

namespace styleclip {

class Bundle;
class Clip;
class Generator;
class IdentityModel;
enum class ClipInput;  // losses/losses.h

/// An option an engine takes, declared beside the engine so any front end can offer it.
struct EngineOption {
  enum class Kind {
    kInteger,
    kNumber,  ///< finite floating-point
    kText,
    kFlag,
    kImage,  ///< a picture file: the front end reads it and hands over its pixels
  };
  std::string name;  ///< as on the command line, e.g. "--steps"
  Kind kind = Kind::kText;
  std::string help;
  std::string default_value;         ///< shown in help; empty: the engine decides (help says how)
  std::vector<std::string> choices;  ///< kText: the accepted values (empty: any)
};

/// The values given for an engine's options: text by option name (as typed), and the pixels of
/// image options ([H, W, 3] uint8, read by the front end). The engine parses them; every getter
/// throws a usage error naming the option when a value does not parse.
class EngineSettings {
 public:
  void set(const std::string& name, std::string value) { text_[name] = std::move(value); }
  void set_image(const std::string& name, torch::Tensor pixels);
  [[nodiscard]] bool has(const std::string& name) const;

  [[nodiscard]] std::optional<double> number(const std::string& name) const;
  [[nodiscard]] double number(const std::string& name, double fallback) const;
  [[nodiscard]] int64_t integer(const std::string& name, int64_t fallback) const;
  [[nodiscard]] std::string text(const std::string& name, const std::string& fallback) const;
  /// A comma-separated value's items ("3,2" → {"3", "2"}); empty when the option is not given.
  [[nodiscard]] std::vector<std::string> items(const std::string& name) const;
  [[nodiscard]] bool flag(const std::string& name) const;
  /// The pixels of an image option, or an undefined tensor.
  [[nodiscard]] torch::Tensor image(const std::string& name) const;
  /// Every option given, for messages ("--mapper is for --method mapper").
  [[nodiscard]] std::vector<std::string> names() const;

 private:
  std::map<std::string, std::string> text_;
  std::map<std::string, torch::Tensor> images_;
};

/// The models a run has loaded; the engines share them. `identity` may be null.
struct EngineModels {
  const Bundle* bundle = nullptr;
  const Generator* generator = nullptr;
  const Clip* clip = nullptr;
  const IdentityModel* identity = nullptr;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::kFp32;
};

enum class LogLevel { kDebug, kInfo, kWarning, kError };

/// What the caller may observe or control while an engine works. Every hook may be empty.
struct EngineHooks {
  /// Steps done, total, mean loss (iterative engines).
  std::function<void(int, int, double)> progress;
  /// An intermediate image batch [B, 3, R, R] at a step (only when the engine's options ask for
  /// frames); overwritten afterwards, so copy or write it at once.
  std::function<void(int, const torch::Tensor&)> frame;
  /// Asked between steps: true abandons the batch (EditResult::stopped).
  std::function<bool()> should_stop;
  /// Messages for the user (the CLI sends them to its logger).
  std::function<void(LogLevel, const std::string&)> log;
};

/// One batch edited.
struct EditResult {
  torch::Tensor before, after;          ///< [B, 3, R, R] in [-1, 1]
  torch::Tensor ws;                     ///< [B, num_ws, w_dim] edited W+, or undefined (edit in S)
  std::vector<torch::Tensor> styles;    ///< per style layer [B, C], when the edit is in S
  std::vector<nlohmann::json> metrics;  ///< per row
  std::vector<std::string> errors;      ///< per row, empty when the row is fine
  nlohmann::json timing;
  bool stopped = false;  ///< `should_stop` abandoned the batch: nothing in it is valid
};

/// A row of pictures over one parameter, asked for by options (e.g. a strength sweep).
struct Sweep {
  std::string name;  ///< "strength", "threshold"
  std::vector<double> values;
  std::vector<torch::Tensor> images;  ///< per value [B, 3, R, R]
  bool video = false;                 ///< also worth an MP4 (a smooth parameter)
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// The prompt used when none is given (a mapper edits toward its own), or empty: prompt needed.
  [[nodiscard]] virtual std::string default_prompt() const { return {}; }
  /// Prepares for one prompt; returns what the sidecars record as the run's options for it.
  virtual nlohmann::json prepare(const std::string& prompt, const EngineHooks& hooks) = 0;
  /// Prepares one edit toward several prompts at once (only for engines whose
  /// EngineInfo::combines_prompts says so); the default refuses.
  virtual nlohmann::json prepare_combined(const std::vector<std::string>& prompts,
                                          const EngineHooks& hooks);
  /// Edits `ws` [B, num_ws, w_dim] toward the prepared prompt.
  virtual EditResult edit(const torch::Tensor& ws, const EngineHooks& hooks) = 0;
  /// Edits style-space codes (per style layer [B, C_l], e.g. an earlier edit's `.styles.pt`)
  /// toward the prepared prompt, for engines whose EngineInfo::styles_refused is empty; the
  /// result has `styles` and no `ws`. The default refuses.
  virtual EditResult edit_styles(const std::vector<torch::Tensor>& styles,
                                 const EngineHooks& hooks);
  /// The sweeps the options asked for, over the batch just edited (none by default).
  virtual std::vector<Sweep> sweeps(const torch::Tensor& ws) {
    (void)ws;
    return {};
  }
};

/// An engine as the registry knows it.
struct EngineInfo {
  std::string name;     ///< the value of `edit --method`
  std::string summary;  ///< one line, for help
  std::vector<EngineOption> options;
  /// Whether the run's inputs are latents to edit (false: the engine starts from the average
  /// latent, e.g. optimisation's free mode, and inputs are refused).
  std::function<bool(const EngineSettings&)> takes_inputs = [](const EngineSettings&) {
    return true;
  };
  /// Whether a run needs a prompt from the user (a mapper has its own; an image pair is one).
  std::function<bool(const EngineSettings&)> needs_prompt = [](const EngineSettings&) {
    return true;
  };
  /// Why a run takes at most one prompt with these settings (e.g. a mapper edits toward its
  /// own, an image pair is one direction), or empty: any number of prompts.
  std::function<std::string(const EngineSettings&)> one_prompt_only = [](const EngineSettings&) {
    return std::string();
  };
  /// Why these settings cannot edit style-space inputs (Engine::edit_styles), or empty: they can.
  std::function<std::string(const EngineSettings&)> styles_refused = [](const EngineSettings&) {
    return std::string(
        "a style-space input (.styles.pt) is edited by --method global or --method optimize "
        "--space S");
  };
  /// Whether these settings ask for one output toward all the prompts together
  /// (Engine::prepare_combined) instead of one output per prompt.
  std::function<bool(const EngineSettings&)> combines_prompts = [](const EngineSettings&) {
    return false;
  };
  /// When combining: checks the settings against the number of prompts (e.g. one strength per
  /// prompt) before any model loads; usage errors naming the option.
  std::function<void(const EngineSettings&, size_t prompts)> check_combined;
  /// Checks the settings against the bundle and device before any model loads (fast failure);
  /// throws usage or bundle errors naming the option or file.
  std::function<void(const EngineSettings&, const Bundle&, const torch::Device&)> check;
  std::function<std::unique_ptr<Engine>(const EngineModels&, const EngineSettings&)> create;
};

/// Every engine, in registration order (optimize, mapper, global).
const std::vector<EngineInfo>& engines();
/// The engine called `name`; a usage error naming --method and the choices otherwise.
const EngineInfo& find_engine(const std::string& name);

/// CLIP similarity with `text` before and after (images fed to CLIP as `input` says), and
/// identity similarity where `identity` is given: the metrics every engine reports per row.
std::vector<nlohmann::json> judge_rows(const Clip& clip, int64_t resolution, ClipInput input,
                                       const IdentityModel* identity, const torch::Tensor& text,
                                       const torch::Tensor& before, const torch::Tensor& after);

/// `--clip-input raw|normalized`: how images reach CLIP (losses.h), an option every engine takes.
EngineOption clip_input_option();

/// `text` as a finite number; a usage error naming `option` otherwise.
double parse_finite(const std::string& option, const std::string& text);

/// "a:b:n" → n evenly spaced values from a to b (2 ≤ n ≤ 1000); empty spec → none. Throws a usage
/// error naming `option` otherwise.
std::vector<double> parse_sweep(const std::string& spec, const std::string& option);

}  // namespace styleclip
