// `styleclip global prepare` — style-space statistics and per-channel CLIP directions for
// `edit --method global`, written into the bundle: parses the options into a GlobalPrepareRun and
// runs it (workflows/global_prepare.h: chunks, checkpoints, --resume, Ctrl-C, --shard); and
// `styleclip global merge`, which joins the shards of a preparation made on many machines.
#include <styleclip/workflows/global_prepare.h>

#include <iostream>

#include "common.h"

namespace styleclip::cli {
namespace {

struct PrepareCliOptions {
  std::string models;
  GlobalPrepareRun run;
  bool json = false;
};

int run_prepare(PrepareCliOptions& o) {
  o.run.models = resolve_models(o.models);
  const auto report = prepare_global(o.run);
  if (o.json) {
    const bool finished = report.exit_code == 0;
    const bool shard = report.shard_count > 1;
    nlohmann::json j = {
        {"status", finished ? "done" : "stopped"},
        {finished ? (shard ? "shard_file" : "global_stats") : "checkpoint", report.file.string()},
        {"channels_done", report.channels_done},
        {"channels", report.channels}};
    if (shard) {
      j["shard"] = {{"index", report.shard_index}, {"count", report.shard_count}};
    } else {
      j["manifest"] = report.section;
    }
    std::cout << j.dump(2) << "\n";
  } else if (report.exit_code == 0) {
    std::cout << report.file.string() << "\n";
  }
  return report.exit_code;
}

struct MergeCliOptions {
  std::string models;
  bool json = false;
};

int run_merge(const MergeCliOptions& o) {
  const auto report = merge_global_shards(resolve_models(o.models));
  if (o.json) {
    std::cout << nlohmann::json{{"status", "done"},
                                {"global_stats", report.file.string()},
                                {"shards", report.shard_count},
                                {"channels", report.channels},
                                {"manifest", report.section}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << report.file.string() << "\n";
  }
  return 0;
}

}  // namespace

void setup_global(CLI::App& app, Registry& reg) {
  auto* global = app.add_subcommand("global", "global style-space directions");
  global->require_subcommand(1);
  auto o = std::make_shared<PrepareCliOptions>();
  auto* sub = global->add_subcommand(
      "prepare", "compute style statistics and per-channel CLIP directions into the bundle");
  add_models_option(*sub, o->models);
  sub->add_option("--samples", o->run.samples, "W samples for the style mean/std")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(10000000)));
  sub->add_option("--images", o->run.images, "sample images per channel")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(100000)));
  sub->add_option("--layers", o->run.layers,
                  "style layers, e.g. 0,2,3 (default: non-toRGB layers up to 128 px)");
  sub->add_option("--seed", o->run.seed, "seed of the W samples")->capture_default_str();
  add_class_option(*sub, o->run.class_index);
  sub->add_option("--batch", o->run.batch,
                  "renders per generator call (default: 16 at 64 px down to 1 at 256 px on CPU, "
                  "256 on CUDA)")
      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  sub->add_option("--chunk", o->run.chunk, "channels between checkpoints")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  sub->add_option("--prefix-cache", o->run.prefix_cache_mib,
                  "MiB for reusing the layers before the perturbed one across its channels "
                  "(0: render every image whole; same result)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--resume", o->run.resume,
                "continue an interrupted preparation from its checkpoint");
  sub->add_option(
         "--max-chunks", o->run.max_chunks,
         "stop (exit 130, checkpoint kept) after this many chunks, e.g. to fit a time-limited job; "
         "continue with --resume")
      ->check(CLI::NonNegativeNumber);
  add_device_options(*sub, o->run.device, o->run.precision);
  sub->add_flag("--json", o->json, "print the result (file, channels, manifest entry) as JSON");
  sub->add_option("--shard", o->run.shard,
                  "K/N: compute the K-th of N slices of the channels (one per machine; join them "
                  "with `global merge`), or auto (Slurm array / Kubernetes indexed Job)");
  reg.push_back({sub, [o] { return run_prepare(*o); }});

  auto m = std::make_shared<MergeCliOptions>();
  auto* merge = global->add_subcommand(
      "merge", "join the shards of `global prepare --shard K/N` into the bundle's global_stats.pt");
  add_models_option(*merge, m->models);
  merge->add_flag("--json", m->json, "print the result (file, channels, manifest entry) as JSON");
  reg.push_back({merge, [m] { return run_merge(*m); }});
}

}  // namespace styleclip::cli
