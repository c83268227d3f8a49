// src/cli/common.h — what every subcommand shares: registration, options, sidecars.
//
// Each subcommand lives in its own cmd_*.cpp with an options struct, a `setup_*` that declares
// its flags, and a `run_*` that does the work after parsing (CLI11 callbacks run inside parse()
// and would let exceptions escape: parse first, then dispatch). Only main() maps exceptions to
// exit codes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace styleclip {
struct GeneratorInfo;  // models/bundle.h
}  // namespace styleclip

namespace styleclip::cli {

/// Options every subcommand sees (set on the top-level app).
struct GlobalOptions {
  int threads = 0;  ///< 0 = all cores
  bool verbose = false;
  bool quiet = false;
};

/// A registered subcommand: the CLI11 app and the function that runs it after parsing.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

using Registry = std::vector<Command>;

void setup_info(CLI::App& app, Registry& reg);
void setup_generate(CLI::App& app, Registry& reg);
void setup_tokenize(CLI::App& app, Registry& reg);
void setup_embed(CLI::App& app, Registry& reg);
void setup_edit(CLI::App& app, Registry& reg);
void setup_global(CLI::App& app, Registry& reg);
void setup_mapper(CLI::App& app, Registry& reg);
void setup_compare(CLI::App& app, Registry& reg);
void setup_align(CLI::App& app, Registry& reg);
void setup_invert(CLI::App& app, Registry& reg);

/// `--models DIR` with its default: $STYLECLIP_MODELS, else the bundled demonstration model.
void add_models_option(CLI::App& app, std::string& target);
/// `--device auto|cpu|cuda[:N]` and `--precision auto|fp32|tf32|bf16|fp16`, defaults "auto".
void add_device_options(CLI::App& app, std::string& device, std::string& precision);
/// The bundle folder to use: the flag if given, else $STYLECLIP_MODELS, else the default.
std::filesystem::path resolve_models(const std::string& flag);

/// "7", "0-7", "1,4,9-11" → seeds. Throws a usage error naming the option on anything else.
std::vector<uint64_t> parse_seeds(const std::string& spec);

/// Usage error naming --seed when the bundle cannot draw one of `seeds` (numpy's RandomState,
/// NVIDIA's convention, takes seeds up to 2^32 − 1 only).
void check_seeds(const std::vector<uint64_t>& seeds, const GeneratorInfo& info,
                 const std::filesystem::path& models);

/// Adds to every floating-point option of `app` and its subcommands a check that refuses NaN and
/// ±inf (CLI11's range checks let NaN through: every comparison with it is false).
void require_finite_numbers(CLI::App& app);

/// `--class N`: the class of a conditional generator's sampled latents.
void add_class_option(CLI::App& app, std::optional<int64_t>& target);
/// Checks `--class` against the bundle, before any model loads: required (and within
/// 0..c_dim−1) on a conditional generator when the run samples z (`samples_z`), refused on an
/// unconditional one, and refused where nothing is sampled (`sampled_by` names the option that
/// samples, e.g. "--seed"). Returns the class to use (nullopt: none).
std::optional<int64_t> check_class(const std::optional<int64_t>& flag, const GeneratorInfo& info,
                                   const std::filesystem::path& models, bool samples_z,
                                   const std::string& sampled_by);

/// The fields every sidecar starts with: tool version, command, time, bundle and checksums.
nlohmann::json sidecar_header(const std::string& command, const std::filesystem::path& models,
                              const nlohmann::json& checksums);

/// Writes JSON (pretty, newline-terminated) atomically.
void write_json(const std::filesystem::path& path, const nlohmann::json& j);

}  // namespace styleclip::cli

namespace styleclip::cli {

/// Progress of long work on stderr: a redrawn bar on a terminal, plain log lines (every 10 %)
/// otherwise, so batch logs stay readable.
class Progress {
 public:
  Progress(std::string label, int total);
  /// `extra` is shown after the counts, e.g. "loss 0.731".
  void update(int done, const std::string& extra = "");
  void finish();

 private:
  std::string label_;
  int total_;
  bool tty_;
  int last_decile_ = -1;
  double start_;
};

/// "A Blue Shape!" → "a-blue-shape" (at most 40 characters), for output names.
std::string slug(const std::string& text);

}  // namespace styleclip::cli
