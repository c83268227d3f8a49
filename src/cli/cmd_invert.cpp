// `styleclip invert` — the W+ code of each photo's face: align (when a face detector is at hand
// and the input is not already an aligned crop), then the encoder and/or the optimisation
// projector; cached beside the outputs (workflows/invert.h).
#include <styleclip/workflows/invert.h>
#include "common.h"

namespace styleclip::cli {
namespace {

struct InvertCliOptions {
  std::string models;
  InvertRun run;
  bool json = false;
};

int run_invert_command(InvertCliOptions& o) {
  o.run.models = resolve_models(o.models);
  o.run.on_output = path_printer(o.json);
  return print_report(run_invert(o.run), o.json);
}

}  // namespace

void setup_invert(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<InvertCliOptions>();
  auto& r = o->run;
  auto* sub = app.add_subcommand(
      "invert", "find the W+ latent of each photo's face (align, then an optimisation projector)");
  add_models_option(*sub, o->models);
  sub->add_option("images", r.inputs.paths,
                  "photos (or aligned crops with --aligned) and folders of them")
      ->required();
  sub->add_option("--out", r.out, "output folder")->required();
  add_folder_options(*sub, r.inputs.recursive, r.inputs.globs, r.inputs.shard);
  add_photo_options(*sub, r.photo, "--steps", /*pti=*/true);
  sub->add_option("--lr", r.photo.engine.lr, "peak learning rate (same as --invert-lr)");
  sub->add_flag("--overwrite", r.photo.overwrite, "invert again even when a cached result exists");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout (latents, PSNR, failures)");
  add_device_options(*sub, r.device, r.precision);
  reg.push_back({sub, [o] { return run_invert_command(*o); }});
}

}  // namespace styleclip::cli
