// `styleclip align` — find the face in each photo and write the FFHQ-style aligned crop the
// generator expects, with a JSON of the landmarks and the crop transform (workflows/align.h). A
// photo with no face exits 4 naming the photo; several faces: the largest, with a note, or each
// with --all-faces.
#include <styleclip/workflows/align.h>
#include "common.h"

namespace styleclip::cli {
namespace {

struct AlignOptions {
  std::string models;
  AlignRun run;
  bool json = false;
};

int run_align_command(AlignOptions& o) {
  // The bundle is needed only for what was not given: the detector or the crop's size.
  if (o.run.detector.empty() || o.run.size == 0) o.run.models = resolve_models(o.models);
  o.run.on_output = path_printer(o.json);
  return print_report(run_align(o.run), o.json);
}

}  // namespace

void setup_align(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<AlignOptions>();
  auto& r = o->run;
  auto* sub = app.add_subcommand(
      "align", "find the face in photos and write FFHQ-style aligned crops with their landmarks");
  add_models_option(*sub, o->models);
  sub->add_option("photos", r.inputs.paths,
                  "photos (PNG, JPEG, WebP, TIFF, BMP) and folders of them")
      ->required();
  sub->add_option("--out", r.out, "output folder")->required();
  add_folder_options(*sub, r.inputs.recursive, r.inputs.globs, r.inputs.shard);
  sub->add_flag("--overwrite", r.inputs.overwrite,
                "align photos whose outputs exist again (default: skip them)");
  sub->add_option("--face-detector", r.detector,
                  "YuNet face detector (.onnx; default: the bundle's face_detector.onnx)");
  sub->add_option("--size", r.size, "side of the aligned crop (default: the generator's)")
      ->check(CLI::Range(16, 4096));
  sub->add_flag("--all-faces", r.all_faces, "align every face found, not only the largest");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout (the crops, the failures)");
  sub->add_option("--max-pixels", r.max_pixels,
                  "refuse photos with more pixels than this (decompression bombs)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  sub->add_option("--min-score", r.min_score, "detection score threshold")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  reg.push_back({sub, [o] { return run_align_command(*o); }});
}

}  // namespace styleclip::cli
