// `styleclip latents pack` — many latent files and folders into one [N, num_ws, w_dim] training
// file with a sidecar listing its sources (workflows/latents.h).
#include <styleclip/workflows/latents.h>

#include <iostream>

#include "common.h"

namespace styleclip::cli {
namespace {

struct PackOptions {
  std::string models;
  PackRun run;
  bool json = false;
};

int run_pack(PackOptions& o) {
  o.run.models = resolve_models(o.models);
  const auto report = pack_latents(o.run);
  if (o.json) {
    std::cout << nlohmann::json{{"out", report.out.string()},
                                {"sidecar", report.sidecar.string()},
                                {"rows", report.rows},
                                {"files", report.files},
                                {"failed", report.failed}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << report.out.string() << "\n";
  }
  return report.exit_code;
}

}  // namespace

void setup_latents(CLI::App& app, Registry& reg) {
  auto* latents = app.add_subcommand("latents", "latent datasets");
  latents->require_subcommand(1);
  auto o = std::make_shared<PackOptions>();
  auto& r = o->run;
  auto* sub = latents->add_subcommand(
      "pack",
      "gather latent files and folders into one [N, num_ws, w_dim] file (for mapper train)");
  add_models_option(*sub, o->models);
  sub->add_option("inputs", r.inputs,
                  "latent files (.pt, .npy) and folders (of *.latent.pt: what invert, generate "
                  "and edit write)")
      ->required();
  sub->add_flag("--recursive,-r", r.recursive, "look into sub-folders of folder inputs");
  sub->add_option("--glob", r.globs, "file patterns taken from folders (default *.latent.pt)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  sub->add_option("--out", r.out, "the file to write (FILE.pt; its sidecar is FILE.json)")
      ->required();
  sub->add_flag("--json", o->json, "print the result (rows, files, failures) as JSON");
  reg.push_back({sub, [o] { return run_pack(*o); }});
}

}  // namespace styleclip::cli
