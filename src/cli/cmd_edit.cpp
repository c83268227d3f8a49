// `styleclip edit` — edit photos, latents or sampled seeds with words: parses the options into an
// EditRun and runs it (workflows/edit.h). The engines' own options come from the engine registry
// (engines/engine.h), so a new engine appears here without an edit to this file.
#include <styleclip/engines/engine.h>
#include <styleclip/error.h>
#include <styleclip/io/image_io.h>
#include <styleclip/workflows/edit.h>

#include <map>
#include <memory>

#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace {

struct EditOptions {
  std::string models;
  EditRun run;
  bool json = false;
  /// Each engine option's CLI11 handle and storage, by name.
  struct EngineFlag {
    EngineOption spec;
    CLI::Option* option = nullptr;
    std::string value;
    bool flag = false;
  };
  std::map<std::string, EngineFlag> engine_flags;
};

/// Every registered engine's options, one option group per engine. An option two engines share
/// (e.g. --strength) is declared once, with both helps.
void add_engine_options(CLI::App& sub, EditOptions& o) {
  using K = EngineOption::Kind;
  for (const auto& engine : engines()) {
    CLI::Option_group* group = nullptr;
    for (const auto& spec : engine.options) {
      auto [it, fresh] = o.engine_flags.try_emplace(spec.name);
      auto& f = it->second;
      if (!fresh) {
        if (f.spec.help != spec.help)
          f.option->description(f.option->get_description() + "; " + spec.help);
        continue;
      }
      if (group == nullptr) group = sub.add_option_group(engine.name, engine.summary);
      f.spec = spec;
      if (spec.kind == K::kFlag) {
        f.option = group->add_flag(spec.name, f.flag, spec.help);
        continue;
      }
      f.option = group->add_option(spec.name, f.value, spec.help);
      if (!spec.default_value.empty()) f.option->default_str(spec.default_value);
      if (spec.kind == K::kNumber) f.option->type_name("FLOAT");
      if (spec.kind == K::kInteger) f.option->type_name("INT");
      if (spec.kind == K::kImage) f.option->type_name("IMAGE");
      if (!spec.choices.empty()) f.option->check(one_of(spec.choices));
    }
  }
}

/// The engine options given on the command line, as EngineSettings (image options read here).
EngineSettings engine_settings(const EditOptions& o) {
  EngineSettings s;
  for (const auto& [name, f] : o.engine_flags) {
    if (f.option->count() == 0) continue;
    if (f.spec.kind == EngineOption::Kind::kFlag) {
      s.set(name, f.flag ? "true" : "false");
      continue;
    }
    s.set(name, f.value);
    if (f.spec.kind == EngineOption::Kind::kImage) s.set_image(name, read_image_rgb(f.value));
  }
  return s;
}

int run(EditOptions& o) {
  o.run.models = resolve_models(o.models);
  o.run.settings = engine_settings(o);
  o.run.on_output = path_printer(o.json);
  o.run.log = [](LogLevel level, const std::string& m) {
    switch (level) {
      case LogLevel::kDebug:
        spdlog::debug("{}", m);
        break;
      case LogLevel::kInfo:
        spdlog::info("{}", m);
        break;
      case LogLevel::kWarning:
        spdlog::warn("{}", m);
        break;
      case LogLevel::kError:
        spdlog::error("{}", m);
        break;
    }
  };
  return print_report(run_edit(o.run), o.json);
}

}  // namespace

void setup_edit(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<EditOptions>();
  auto& r = o->run;
  auto* sub = app.add_subcommand("edit", "edit photos, latents or sampled seeds with words");
  add_models_option(*sub, o->models);
  std::vector<std::string> methods;
  for (const auto& e : engines()) methods.push_back(e.name);
  sub->add_option("--method", r.method, "engine: " + CLI::detail::join(methods, ", "))
      ->capture_default_str()
      ->check(one_of(methods));
  sub->add_option("--text", r.prompts,
                  "the edit, in words, e.g. \"a smiling face\" (global: the target); repeat "
                  "for several prompts")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  sub->add_option("--prompts", r.prompts_file, "a file with one prompt per line ('#' comments)");
  sub->add_option("inputs", r.inputs,
                  "photos (.png .jpg .webp .tif .bmp: the face is found, aligned and inverted), "
                  "latent files (.pt / .npy) and folders of them");
  add_folder_options(*sub, r.recursive, r.globs, r.shard);
  sub->add_flag("--overwrite", r.overwrite,
                "recompute inputs whose outputs exist (default: skip them)");
  sub->add_flag("--report", r.report,
                "also write OUT/index.html: the results' pictures and a sortable table of their "
                "metrics, viewable offline");
  sub->add_option("--golden", r.golden,
                  "after the run, compare --out with this folder (exit 1 on drift)");
  sub->add_option("--golden-tolerance", r.golden_tolerance,
                  "8-bit image levels allowed by --golden")
      ->capture_default_str();
  sub->add_option("--seed", r.seeds, "edit sampled images: N, N-M or a list");
  sub->add_option("--truncation", r.truncation, "truncation psi for --seed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  add_class_option(*sub, r.class_index);
  add_transform_options(*sub, r.translate, r.rotate);
  sub->add_option("--out", r.out, "output folder")->capture_default_str();
  add_device_options(*sub, r.device, r.precision);
  sub->add_option("--batch", r.batch, "inputs processed together")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_flag("--compare", r.compare, "also write <name>.compare.png: before | after");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout");
  add_engine_options(*sub, *o);
  auto* ph = sub->add_option_group(
      "photos", "photo inputs: find the face, align it, invert it, paste the edit back");
  add_photo_options(*ph, r.photo, "--invert-steps", /*pti=*/true);
  ph->add_flag("--paste-back,!--no-paste-back", r.paste_back,
               "also write <name>.photo.png: the whole photo with the edited face put back "
               "(default on)");
  ph->add_flag("--overwrite-inversion", r.photo.overwrite,
               "invert photos again even when a cached inversion matches");
  reg.push_back({sub, [o] { return run(*o); }});
}

}  // namespace styleclip::cli
