// styleclip/workflows/align.h — FFHQ-style aligned face crops from photos, files or folders:
// what `styleclip align` does, callable from any program (docs/algorithms.md §4.1 gives the
// crop).
//
// A batch run (batch.h): a shard takes its slice of the sorted photos, a photo whose sidecar
// exists is skipped, a photo that cannot be read or has no face fails alone (alone in the run, it
// is the run's error and nothing is written), Ctrl-C stops between photos. Outputs under
// `out/<name>` (`<name>.face<k>` for each face with `all_faces`): `.aligned.png` and `.align.json`
// with the landmarks and the crop transform (written last).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/photo.h>

namespace styleclip {

struct AlignRun {
  /// The bundle: its face detector and generator size are the defaults (empty: no bundle; then
  /// `detector` and `size` are needed).
  std::filesystem::path models;
  std::filesystem::path detector;  ///< YuNet .onnx; empty: the bundle's
  int size = 0;                    ///< side of the crop; 0: the generator's
  bool all_faces = false;          ///< every face, not only the largest
  double min_score = 0.8;          ///< detection score threshold
  int64_t max_pixels = kDefaultMaxPixels;
  BatchInputs inputs{{}, false, photo_globs(), "", false};  ///< photos and folders of them
  std::filesystem::path out = "styleclip-out";
  /// Called with each crop once its outputs are written (the CLI prints it).
  std::function<void(const std::filesystem::path&)> on_output;
};

/// Runs it. Throws styleclip::Error for what stops the whole run (no detector, a single photo
/// that cannot be used, every photo failing).
BatchReport run_align(const AlignRun& run);

}  // namespace styleclip
