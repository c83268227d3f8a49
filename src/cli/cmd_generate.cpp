// `styleclip generate` — images (and their W+ latents) from seeds, latent files and folders
// (workflows/generate.h).
#include <styleclip/workflows/generate.h>
#include "common.h"

namespace styleclip::cli {
namespace {

struct GenerateOptions {
  std::string models;
  GenerateRun run;
  bool json = false;
};

int run_generate_command(GenerateOptions& o) {
  o.run.models = resolve_models(o.models);
  o.run.on_output = path_printer(o.json);
  return print_report(run_generate(o.run), o.json);
}

}  // namespace

void setup_generate(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<GenerateOptions>();
  auto& r = o->run;
  auto* sub = app.add_subcommand("generate", "render images from seeds or W+ latent files");
  add_models_option(*sub, o->models);
  sub->add_option("--seed", r.seeds, "seeds to sample: N, N-M or a list such as 1,4,9-11");
  sub->add_option("--latent,latents", r.inputs.paths,
                  "latent files (.pt from torch.save, or .npy: [w_dim], [num_ws, w_dim] or "
                  "[N, num_ws, w_dim]) and folders of them")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add_folder_options(*sub, r.inputs.recursive, r.inputs.globs, r.inputs.shard);
  sub->add_flag("--overwrite", r.inputs.overwrite,
                "render inputs whose outputs exist again (default: skip them)");
  sub->add_option("--truncation", r.truncation,
                  "truncation psi toward w_avg for sampled seeds (1 = none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  add_class_option(*sub, r.class_index);
  add_transform_options(*sub, r.translate, r.rotate);
  sub->add_option("--out", r.out, "output folder")->required();
  sub->add_flag("--save-styles", r.save_styles,
                "also write <name>.styles.pt: the style-space tensors (a list, torch.load-able)");
  sub->add_flag("--random-noise", r.random_noise,
                "draw fresh per-pixel noise instead of the checkpoint's fixed noise");
  add_device_options(*sub, r.device, r.precision);
  sub->add_option("--batch", r.batch, "images per generator call")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_flag("--json", o->json, "print a JSON summary on stdout instead of image paths");
  reg.push_back({sub, [o] { return run_generate_command(*o); }});
}

}  // namespace styleclip::cli
