// `styleclip invert` — the W+ code of each photo's face: align (when a face detector
// is at hand and the input is not already an aligned crop), then the optimisation projector
// (engines/invert). The result is cached beside the outputs, keyed by the image's checksum, the
// generator's checksum and the options: inverting the same photo again is skipped.
#include <styleclip/engines/invert.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/models/bundle.h>
#include <styleclip/runtime.h>

#include <fstream>
#include <iostream>
#include <optional>

#include <spdlog/spdlog.h>

#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/photo.h>
#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct InvertCliOptions {
  std::string models;
  std::string out;
  std::string device = "auto";
  std::string precision = "auto";
  PhotoOptions photo;
  std::vector<std::string> images;
  bool json = false;
};

int run_invert(InvertCliOptions o) {
  validate(o.photo.engine);
  const auto device = parse_device(o.device);
  o.photo.engine.precision = parse_precision(o.precision, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const Generator gen(bundle, device);
  std::optional<Clip> clip;
  if (PhotoInverter::needs_clip(bundle, o.photo)) clip.emplace(bundle, device);
  std::optional<IdentityModel> identity;
  if (bundle.has("identity")) identity.emplace(bundle, device);
  const PhotoInverter inverter(bundle, models, gen, clip ? &*clip : nullptr,
                               identity ? &*identity : nullptr, o.photo, o.out);
  // Read and locate every face first: with one photo, a bad file or a photo without a face fails
  // before anything is written; in a batch, the others go on.
  std::vector<std::optional<PhotoFace>> faces;
  std::vector<std::string> errors;
  for (const auto& p : o.images) {
    try {
      faces.emplace_back(inverter.locate(p));
      errors.emplace_back();
    } catch (const Error& e) {
      if (o.images.size() == 1) throw;
      faces.emplace_back();
      errors.emplace_back(e.what());
    }
  }
  ensure_output_dir(o.out);
  int failed = 0;
  RunSummary summary("invert");
  for (size_t i = 0; i < faces.size(); ++i) {
    if (!faces[i]) {
      summary.failed(o.images[i], errors[i]);
      ++failed;
      continue;
    }
    inverter.invert(*faces[i]);
    const auto& f = *faces[i];
    summary.done({{"name", f.path.stem().string()},
                  {"photo", f.path.string()},
                  {"latent", f.latent_file.string()},
                  {"sidecar", f.sidecar_file.string()},
                  {"method", f.method},
                  {"psnr", f.psnr},
                  {"identity_similarity", f.identity ? json(*f.identity) : json(nullptr)},
                  {"cached", f.cached}});
    if (!o.json) std::cout << f.latent_file.string() << "\n";
  }
  const auto report = summary.finish(false);
  if (o.json) std::cout << report.dump(2) << "\n";
  if (failed == 0) return 0;
  if (failed == static_cast<int>(o.images.size())) {
    throw input_error("none of the " + std::to_string(failed) +
                      " images could be inverted; the first: " + errors.front());
  }
  return static_cast<int>(ExitCode::kSomeInputsFailed);
}

}  // namespace

void setup_invert(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<InvertCliOptions>();
  auto* sub = app.add_subcommand(
      "invert", "find the W+ latent of each photo's face (align, then an optimisation projector)");
  add_models_option(*sub, o->models);
  sub->add_option("images", o->images, "photos, or aligned crops with --aligned")->required();
  sub->add_option("--out", o->out, "output folder")->required();
  add_photo_options(*sub, o->photo, "--steps");
  sub->add_option("--lr", o->photo.engine.lr, "peak learning rate (same as --invert-lr)");
  sub->add_flag("--overwrite", o->photo.overwrite, "invert again even when a cached result exists");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout (latents, PSNR, failures)");
  add_device_options(*sub, o->device, o->precision);
  reg.push_back({sub, [o] { return run_invert(*o); }});
}

}  // namespace styleclip::cli
