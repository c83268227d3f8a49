// styleclip/workflows/invert.h — the W+ code of each photo's face, from files or folders: what
// `styleclip invert` does, callable from any program. Each photo is found, aligned and inverted
// by PhotoInverter (photo.h), which caches the inversion beside the outputs.
//
// A batch run (batch.h): a shard takes its slice of the sorted photos; a photo inverted before
// with the same image, generator and options is skipped (its cached latent is listed in the
// summary); a photo that cannot be read or has no face fails alone (alone in the run, it is the
// run's error and nothing is written); Ctrl-C abandons the current inversion, writing nothing of
// it. Outputs under `out/<name>`: `.latent.pt`, `.target.png`, `.inverted.png` and `.invert.json`
// (written last).
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/photo.h>

namespace styleclip {

struct InvertRun {
  std::filesystem::path models;  ///< the bundle folder
  PhotoOptions photo;            ///< detection, --with, the projector's options; `overwrite`
  BatchInputs inputs{{}, false, photo_globs(), "", false};  ///< photos and folders of them
  std::filesystem::path out = "styleclip-out";
  std::string device = "auto";
  std::string precision = "auto";
  /// Called with each latent once it is written or found cached (the CLI prints it).
  std::function<void(const std::filesystem::path&)> on_output;
};

/// Runs it. Throws styleclip::Error for what stops the whole run (bad options, an unusable
/// bundle, a single photo that cannot be used, every photo failing).
BatchReport run_invert(const InvertRun& run);

}  // namespace styleclip
