// `styleclip mapper train` — train a latent mapper for one prompt: parses the options into a
// MapperTrainRun and runs it (workflows/mapper_train.h: checkpoints, --resume, Ctrl-C).
#include <styleclip/workflows/mapper_train.h>

#include <iostream>

#include "common.h"

namespace styleclip::cli {
using nlohmann::json;

namespace {

struct MapperCliOptions {
  std::string models;
  MapperTrainRun run;
  std::string pixelnorm = "rows";
  bool no_coarse = false, no_medium = false, no_fine = false;
  bool json = false;
};

int run_mapper_train(MapperCliOptions& o) {
  auto& r = o.run;
  r.models = resolve_models(o.models);
  r.pixel_norm = parse_pixel_norm(o.pixelnorm);
  r.train.groups.coarse = !o.no_coarse;
  r.train.groups.medium = !o.no_medium;
  r.train.groups.fine = !o.no_fine;
  const auto report = train_mapper(r);
  if (o.json) {
    std::cout << json{{"mapper", report.exit_code == 0 ? json(r.out.string()) : json(nullptr)},
                      {"status", report.exit_code == 0 ? "done" : "stopped"},
                      {"steps_done", report.step},
                      {"checkpoint",
                       report.exit_code == 0 ? json(nullptr) : json(report.checkpoint.string())},
                      {"history", report.history}}
                     .dump(2)
              << "\n";
  } else if (report.exit_code == 0) {
    std::cout << r.out.string() << "\n";
  }
  return report.exit_code;
}

}  // namespace

void setup_mapper(CLI::App& app, Registry& reg) {
  auto* mapper = app.add_subcommand("mapper", "latent mappers (StyleCLIP paper, section 5)");
  mapper->require_subcommand(1);
  auto o = std::make_shared<MapperCliOptions>();
  auto& r = o->run;
  auto& t = r.train;
  auto* sub = mapper->add_subcommand("train", "train a mapper for one prompt");
  add_models_option(*sub, o->models);
  sub->add_option("--text", r.text, "the prompt, e.g. \"purple hair\"")->required();
  sub->add_option("--latents", r.latents,
                  "training latent files and folders of *.latent.pt (e.g. inversions of faces, "
                  "or a `latents pack` file)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--sample", r.sample,
                  "or: sample N latents from the generator (truncation --truncation)");
  sub->add_option("--truncation", r.truncation, "truncation psi for --sample")
      ->capture_default_str();
  add_class_option(*sub, r.class_index);
  sub->add_option("--out", r.out, "the mapper file to write")->required();
  sub->add_option("--steps", r.steps,
                  "training steps (the reference's 50000; a few hundred to a few thousand already "
                  "show the edit)")
      ->capture_default_str();
  sub->add_option("--batch", t.batch, "latents per step")->capture_default_str();
  sub->add_option("--optimizer", t.optimizer, "ranger (the reference's) or adam")
      ->capture_default_str()
      ->check(one_of({"ranger", "adam"}));
  sub->add_option("--lr", t.lr, "learning rate")->capture_default_str();
  sub->add_option("--clip-lambda", t.clip_lambda, "weight of the CLIP term")->capture_default_str();
  sub->add_option("--l2-lambda", t.l2_lambda, "weight of mean((w' - w)^2)")->capture_default_str();
  sub->add_option("--id-lambda", r.id_lambda,
                  "weight of the identity term (default 0.1 with an identity model, else 0)");
  sub->add_option("--strength", t.strength, "w' = w + strength*M(w)")->capture_default_str();
  sub->add_flag("--no-coarse", o->no_coarse, "do not edit W+ rows 0-3");
  sub->add_flag("--no-medium", o->no_medium, "do not edit W+ rows 4-7");
  sub->add_flag("--no-fine", o->no_fine, "do not edit W+ rows 8 and up");
  sub->add_option("--pixelnorm", o->pixelnorm,
                  "rows (the reference's, over each group's W+ rows) or features")
      ->capture_default_str()
      ->check(one_of({"rows", "features"}));
  sub->add_option("--val-every", r.val_every, "held-out CLIP loss every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--ckpt-every", r.ckpt_every, "checkpoint every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--image-every", r.image_every,
                  "write <out>.samples/stepN.png (held-out latents, before | after) every N steps");
  sub->add_option("--max-steps", r.max_steps,
                  "stop after N steps of this run (checkpoint kept, exit 130)");
  sub->add_flag("--resume", r.resume, "continue from <out>.ckpt/");
  sub->add_option("--seed", t.seed, "initial weights, sampled latents and batch order")
      ->capture_default_str();
  add_device_options(*sub, r.device, r.precision);
  sub->add_flag("--json", o->json,
                "print the result (mapper file, steps, held-out history) as JSON");
  reg.push_back({sub, [o] { return run_mapper_train(*o); }});
}

}  // namespace styleclip::cli
