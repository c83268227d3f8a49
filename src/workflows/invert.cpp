// `run_invert` (invert.h): each photo through PhotoInverter, as a batch run.
#include <styleclip/workflows/invert.h>

#include <optional>
#include <vector>

#include <spdlog/spdlog.h>

#include <styleclip/engines/invert.h>
#include <styleclip/error.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

json row_of(const PhotoFace& f) {
  return {{"name", f.name},
          {"photo", f.path.string()},
          {"latent", f.latent_file.string()},
          {"sidecar", f.sidecar_file.string()},
          {"method", f.method},
          {"psnr", f.psnr},
          {"identity_similarity", f.identity ? json(*f.identity) : json(nullptr)},
          {"cached", f.cached}};
}

}  // namespace

BatchReport run_invert(const InvertRun& run) {
  PhotoOptions options = run.photo;
  validate(options.engine);
  if (options.with == "pti") validate(options.pti);
  BatchRun batch("invert", run.inputs.shard, options.overwrite);
  const auto device = parse_device(run.device);
  options.engine.precision = parse_precision(run.precision, device);
  const auto photos = expand_inputs(run.inputs.paths, run.inputs.recursive, run.inputs.globs);
  const auto bundle = Bundle::open(run.models);
  const Generator gen(bundle, device);
  std::optional<Clip> clip;
  if (PhotoInverter::needs_clip(bundle, options)) clip.emplace(bundle, device);
  std::optional<IdentityModel> identity;
  if (bundle.has("identity")) identity.emplace(bundle, device);
  const PhotoInverter inverter(bundle, run.models, gen, clip ? &*clip : nullptr,
                               identity ? &*identity : nullptr, options, run.out);
  const auto [first, last] = batch.take(photos.size());
  batch.start();
  for (size_t i = first; i < last && !batch.stop_requested(); ++i) {
    const auto& photo = photos[i];
    try {
      auto face = inverter.locate(photo.path, photo.name);
      inverter.invert(face);
      const auto row = row_of(face);
      if (face.cached) {
        batch.summary().skipped(face.name, row);
      } else {
        batch.summary().done(row);
      }
      if (run.on_output) run.on_output(face.latent_file);
    } catch (const Error& e) {
      if (e.code() == ExitCode::kInterrupted) {
        batch.stopped();  // the projector was stopped: nothing of this photo was written
      } else if (photos.size() == 1) {
        throw;  // one photo: its error is the run's, nothing written
      } else {
        batch.summary().failed(photo.path.string(), e.what());
      }
    }
  }
  return batch.finish(last - first, "images could be inverted");
}

}  // namespace styleclip
