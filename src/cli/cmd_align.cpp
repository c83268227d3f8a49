// `styleclip align` — find the face in each photo and write the FFHQ-style aligned crop the
// generator expects, with a JSON of the landmarks and the crop transform (docs/algorithms.md
// §4.1). A photo with no face exits 4 naming the photo; several faces: the largest, with a note,
// or each with --all-faces.
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/models/bundle.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include <styleclip/workflows/batch.h>

#include <styleclip/workflows/photo.h>
#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct AlignOptions {
  std::string models;
  int64_t max_pixels = kDefaultMaxPixels;
  std::string detector;
  std::string out;
  int size = 0;
  bool all_faces = false;
  bool json = false;
  double min_score = 0.8;
  std::vector<std::string> photos;
};

/// The detector: --face-detector, else the bundle's face_detector.onnx.
fs::path detector_path(const AlignOptions& o, const std::optional<Bundle>& bundle) {
  if (!o.detector.empty()) return o.detector;
  if (bundle && bundle->has("face_detector")) return bundle->file("face_detector");
  throw usage_error(
      "no face detector: give a YuNet model with --face-detector FILE (or add one to the bundle "
      "with scripts/export_bundle.py --face-detector FILE)");
}

int run_align(const AlignOptions& o) {
  std::optional<Bundle> bundle;
  if (o.detector.empty() || o.size == 0) bundle.emplace(Bundle::open(resolve_models(o.models)));
  const int size = o.size > 0 ? o.size : bundle->generator().resolution;
  const FaceDetector detector(detector_path(o, bundle), o.min_score);
  // Read every photo first: a bad file fails before anything is written.
  std::vector<torch::Tensor> images;
  for (const auto& p : o.photos) images.push_back(read_image_rgb(p, o.max_pixels));
  int failed = 0;
  RunSummary summary("align");
  for (size_t i = 0; i < o.photos.size(); ++i) {
    const fs::path photo = o.photos[i];
    const auto faces = detector.detect(images[i]);
    if (faces.empty()) {
      const std::string why = "no face found in '" + photo.string() +
                              "' (the detector needs a roughly frontal face of 20 px or more)";
      if (o.photos.size() == 1) throw input_error(why);
      summary.failed(photo.string(), why);
      ++failed;
      continue;
    }
    if (faces.size() > 1 && !o.all_faces) {
      spdlog::info("'{}': {} faces, aligning the largest (--all-faces for each)", photo.string(),
                   faces.size());
    }
    ensure_output_dir(o.out);  // only once there is something to write
    const size_t n = o.all_faces ? faces.size() : 1;
    for (size_t k = 0; k < n; ++k) {
      const auto a = ffhq_alignment(faces[k].landmarks, size);
      const auto crop = align_face(images[i], a);
      const std::string stem =
          photo.stem().string() + (o.all_faces ? ".face" + std::to_string(k) : std::string());
      const fs::path png = fs::path(o.out) / (stem + ".aligned.png");
      write_image(png, to_generator_range(crop));
      json side = bundle ? sidecar_header("align", bundle->dir(), bundle->checksums())
                         : sidecar_header("align", fs::path(), json::object());
      side["input"] = {{"photo", fs::absolute(photo).string()},
                       {"width", images[i].size(1)},
                       {"height", images[i].size(0)},
                       {"faces_found", faces.size()},
                       {"face_index", k}};
      side["face"] = faces[k].to_json();
      side["alignment"] = a.to_json();
      side["outputs"] = {{"image", png.filename().string()}};
      write_json(fs::path(o.out) / (stem + ".align.json"), side);
      summary.done({{"name", stem},
                    {"photo", photo.string()},
                    {"image", png.string()},
                    {"face_index", k},
                    {"faces_found", faces.size()}});
      if (!o.json) std::cout << png.string() << "\n";
    }
  }
  const auto report = summary.finish(false);
  if (o.json) std::cout << report.dump(2) << "\n";
  if (failed == 0) return 0;
  if (failed == static_cast<int>(o.photos.size())) {
    throw input_error("no face found in any of the " + std::to_string(failed) + " photos");
  }
  return static_cast<int>(ExitCode::kSomeInputsFailed);
}

}  // namespace

void setup_align(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<AlignOptions>();
  auto* sub = app.add_subcommand(
      "align", "find the face in photos and write FFHQ-style aligned crops with their landmarks");
  add_models_option(*sub, o->models);
  sub->add_option("photos", o->photos, "photos (PNG, JPEG, WebP, TIFF, BMP)")->required();
  sub->add_option("--out", o->out, "output folder")->required();
  sub->add_option("--face-detector", o->detector,
                  "YuNet face detector (.onnx; default: the bundle's face_detector.onnx)");
  sub->add_option("--size", o->size, "side of the aligned crop (default: the generator's)")
      ->check(CLI::Range(16, 4096));
  sub->add_flag("--all-faces", o->all_faces, "align every face found, not only the largest");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout (the crops, the failures)");
  sub->add_option("--max-pixels", o->max_pixels,
                  "refuse photos with more pixels than this (decompression bombs)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  sub->add_option("--min-score", o->min_score, "detection score threshold")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  reg.push_back({sub, [o] { return run_align(*o); }});
}

}  // namespace styleclip::cli
