// `run_align` (align.h): detect, align and write each photo's face crop.
#include <styleclip/workflows/align.h>

#include <optional>
#include <vector>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// The detector: the run's, else the bundle's face_detector.onnx.
fs::path detector_path(const AlignRun& run, const std::optional<Bundle>& bundle) {
  if (!run.detector.empty()) return run.detector;
  if (bundle && bundle->has("face_detector")) return bundle->file("face_detector");
  throw usage_error(
      "no face detector: give a YuNet model with --face-detector FILE (or add one to the bundle "
      "with scripts/export_bundle.py --face-detector FILE)");
}

/// One photo: its faces' crops and sidecars, each recorded in the summary.
void align_photo(const AlignRun& run, const FaceDetector& detector, const InputFile& photo,
                 int size, const json& header, BatchRun& batch) {
  const auto image = read_image_rgb(photo.path, run.max_pixels);
  const auto faces = detector.detect(image);
  if (faces.empty()) {
    throw input_error("no face found in '" + photo.path.string() +
                      "' (the detector needs a roughly frontal face of 20 px or more)");
  }
  if (faces.size() > 1 && !run.all_faces) {
    spdlog::info("'{}': {} faces, aligning the largest (--all-faces for each)", photo.path.string(),
                 faces.size());
  }
  const size_t n = run.all_faces ? faces.size() : 1;
  for (size_t k = 0; k < n; ++k) {
    const auto a = ffhq_alignment(faces[k].landmarks, size);
    const auto crop = align_face(image, a);
    const std::string name = photo.name + (run.all_faces ? ".face" + std::to_string(k) : "");
    const fs::path base = run.out / name;
    ensure_output_dir(base.parent_path());
    const fs::path png = base.string() + ".aligned.png";
    write_image(png, to_generator_range(crop));
    json side = header;
    side["input"] = {{"photo", fs::absolute(photo.path).string()},
                     {"width", image.size(1)},
                     {"height", image.size(0)},
                     {"faces_found", faces.size()},
                     {"face_index", k}};
    side["face"] = faces[k].to_json();
    side["alignment"] = a.to_json();
    side["outputs"] = {{"image", png.filename().string()}};
    write_json(base.string() + ".align.json", side);
    batch.summary().done({{"name", name},
                          {"photo", photo.path.string()},
                          {"image", png.string()},
                          {"face_index", k},
                          {"faces_found", faces.size()}});
    if (run.on_output) run.on_output(png);
  }
}

}  // namespace

BatchReport run_align(const AlignRun& run) {
  BatchRun batch("align", run.inputs.shard, run.inputs.overwrite);
  std::optional<Bundle> bundle;
  if (!run.models.empty()) bundle.emplace(Bundle::open(run.models));
  if (run.size == 0 && !bundle) throw usage_error("align needs --size or a bundle (--models)");
  const int size = run.size > 0 ? run.size : bundle->generator().resolution;
  if (size < 16 || size > 4096) throw usage_error("invalid --size: must be 16 to 4096");
  const FaceDetector detector(detector_path(run, bundle), run.min_score);
  const auto photos = expand_inputs(run.inputs.paths, run.inputs.recursive, run.inputs.globs);
  const auto [first, last] = batch.take(photos.size());
  const json header = bundle ? sidecar_header("align", bundle->dir(), bundle->checksums())
                             : sidecar_header("align", fs::path(), json::object());
  batch.start();
  for (size_t i = first; i < last && !batch.stop_requested(); ++i) {
    const auto& photo = photos[i];
    // Done before: its (first) sidecar is there.
    const auto marker = run.out / (photo.name + (run.all_faces ? ".face0" : "") + ".align.json");
    if (batch.finished(photo.name, marker)) continue;
    try {
      align_photo(run, detector, photo, size, header, batch);
    } catch (const Error& e) {
      if (photos.size() == 1) throw;  // one photo: its error is the run's, nothing written
      batch.summary().failed(photo.path.string(), e.what());
    }
  }
  return batch.finish(last - first, "photos could be aligned");
}

}  // namespace styleclip
