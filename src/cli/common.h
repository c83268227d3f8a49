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

#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
struct GeneratorInfo;  // models/bundle.h
struct PhotoOptions;   // workflows/photo.h
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
void setup_latents(CLI::App& app, Registry& reg);
void setup_serve(CLI::App& app, Registry& reg);
/// Blocks SIGINT and SIGTERM in this thread and every thread made after it, so that `serve`'s
/// own thread takes them (sigwait): called before the runtime starts its thread pools.
void block_stop_signals();

/// `--models DIR` with its default: $STYLECLIP_MODELS, else the bundled demonstration model.
void add_models_option(CLI::App& app, std::string& target);
/// `--device auto|cpu|cuda[:N]` and `--precision auto|fp32|tf32|bf16|fp16`, defaults "auto".
void add_device_options(CLI::App& app, std::string& device, std::string& precision);
/// The bundle folder to use: the flag if given, else $STYLECLIP_MODELS, else the default.
std::filesystem::path resolve_models(const std::string& flag);

/// Adds to every floating-point option of `app` and its subcommands a check that refuses NaN and
/// ±inf (CLI11's range checks let NaN through: every comparison with it is false).
void require_finite_numbers(CLI::App& app);

/// `--class N`: the class of a conditional generator's sampled latents.
void add_class_option(CLI::App& app, std::optional<int64_t>& target);
/// `--face-detector`, `--aligned`, `--max-pixels` and the projector's options. `prefix` names the
/// projector's step option: "--steps" for invert, "--invert-steps" for edit (whose --steps is
/// the edit's). `pti`: offer `--with pti` and its options.
void add_photo_options(CLI::App& app, PhotoOptions& o, const std::string& steps_flag,
                       bool pti = false);

/// `--recursive`, `--glob` (defaults shown: `globs` as given) and `--shard`: how a batch command
/// takes folders and its slice of the inputs (workflows/batch.h).
void add_folder_options(CLI::App& app, bool& recursive, std::vector<std::string>& globs,
                        std::string& shard);

/// `--translate X,Y` and `--rotate DEG`: StyleGAN3's input transform (models/generator.h).
void add_transform_options(CLI::App& app, std::string& translate, double& rotate);

/// What a batch command prints on stdout: each output's path as it is written (`print_paths`,
/// the default), or the run summary as JSON at the end (`--json`). Returns the exit code.
std::function<void(const std::filesystem::path&)> path_printer(bool json);
int print_report(const BatchReport& report, bool json);

/// A CLI11 check that takes one of `choices` (any case; the value becomes the choice as written)
/// and otherwise fails with "expected A, B or C, found 'x'".
CLI::Validator one_of(std::vector<std::string> choices);

}  // namespace styleclip::cli
