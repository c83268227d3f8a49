// styleclip — edit images with words. The thin CLI over styleclip::core.
#include <styleclip/error.h>
#include <styleclip/runtime.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <new>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <c10/util/Exception.h>

#include "common.h"

namespace {

void setup_logging(const styleclip::cli::GlobalOptions& g) {
  // Messages go to stderr; stdout carries only results (docs/conventions.md habit 5).
  auto logger = spdlog::stderr_color_mt("styleclip");
  logger->set_pattern("%^%l%$: %v");
  logger->set_level(g.quiet ? spdlog::level::warn
                            : (g.verbose ? spdlog::level::debug : spdlog::level::info));
  spdlog::set_default_logger(logger);
  styleclip::set_warning_sink([](const std::string& m) { spdlog::warn("{}", m); });
}

int fail(styleclip::ExitCode code, const std::string& message) {
  std::cerr << "styleclip: error: " << message << "\n";
  return static_cast<int>(code);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace styleclip;
  CLI::App app{"styleclip — edit StyleGAN2 images with text, guided by CLIP", "styleclip"};
  app.set_version_flag("--version", STYLECLIP_VERSION);
  app.require_subcommand(1);
  // A repeated single-valued option takes its last value, so scripts can append overrides
  // (subcommands inherit this default).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.fallthrough();  // global options (--threads, -v, -q) also work after the subcommand
  cli::GlobalOptions global;
  app.add_option("--threads", global.threads,
                 "CPU threads for Torch (default: $OMP_NUM_THREADS, else all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("-v,--verbose", global.verbose, "more log output");
  app.add_flag("-q,--quiet", global.quiet, "only warnings and errors on stderr");

  cli::Registry registry;
  cli::setup_info(app, registry);
  cli::setup_generate(app, registry);
  cli::setup_edit(app, registry);
  cli::setup_global(app, registry);
  cli::setup_mapper(app, registry);
  cli::setup_tokenize(app, registry);
  cli::setup_embed(app, registry);
  cli::setup_compare(app, registry);
  cli::setup_align(app, registry);
  cli::setup_invert(app, registry);
  cli::setup_latents(app, registry);
  cli::setup_serve(app, registry);
  cli::require_finite_numbers(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(ExitCode::kUsage, std::string(e.what()) + " (see styleclip --help)");
  }

  setup_logging(global);
  try {
    // `serve` takes Ctrl-C on a thread of its own; every thread must leave the signals to it,
    // including the thread pools the runtime is about to start.
    if (app.got_subcommand("serve")) cli::block_stop_signals();
    configure_runtime(global.threads);
    for (auto& cmd : registry) {
      if (cmd.app->parsed()) return cmd.run();
    }
    return fail(ExitCode::kUsage, "no subcommand given (see styleclip --help)");
  } catch (const Error& e) {
    return fail(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return fail(ExitCode::kDevice, "out of memory (try a smaller --batch)");
  } catch (const std::exception& e) {        // c10::Error, a TorchScript traceback, ...
    const std::string m = torch_message(e);  // one line
    if (is_out_of_memory(m)) {
      return fail(ExitCode::kDevice, "out of memory: " + m + " (try a smaller --batch)");
    }
    const bool torch = dynamic_cast<const c10::Error*>(&e) != nullptr;
    return fail(ExitCode::kSomeInputsFailed,
                std::string(torch ? "internal error in LibTorch: " : "internal error: ") + m);
  }
}
