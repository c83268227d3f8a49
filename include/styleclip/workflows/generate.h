// styleclip/workflows/generate.h — images (and their W+ latents) from seeds, latent files and
// folders of them: what `styleclip generate` does, callable from any program.
//
// A batch run (batch.h): a shard takes its slice of the sorted inputs, an input whose sidecar
// exists is skipped, a latent file that cannot be read fails alone (alone in the run, it is the
// run's error and nothing is written), Ctrl-C stops between generator calls. Outputs under
// `out/<name>`: `.png`, `.latent.pt`, `.styles.pt` when asked for, and `.json` (written last).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <styleclip/workflows/batch.h>

namespace styleclip {

struct GenerateRun {
  std::filesystem::path models;  ///< the bundle folder
  std::string seeds;             ///< "N", "N-M" or a list: sampled latents
  /// Latent files and folders of them; the folders' patterns default to .pt and .npy.
  BatchInputs inputs{{}, false, {"*.pt", "*.npy"}, "", false};
  double truncation = 0.7;  ///< for seeds: psi toward w_avg (1 = none)
  std::optional<int64_t> class_index;
  std::filesystem::path out = "styleclip-out";
  bool save_styles = false;   ///< also write `<name>.styles.pt`
  bool random_noise = false;  ///< fresh per-pixel noise instead of the checkpoint's
  std::string translate;      ///< StyleGAN3: "X,Y", the input transform's shift (inputs.h)
  double rotate = 0;          ///< StyleGAN3: the input transform's turn, degrees
  std::string device = "auto";
  std::string precision = "auto";
  int batch = 8;  ///< images per generator call
  /// Called with each image once its outputs are written (the CLI prints it).
  std::function<void(const std::filesystem::path&)> on_output;
};

/// Runs it. Throws styleclip::Error for what stops the whole run (bad options, an unusable
/// bundle, a single input that cannot be used), before any output is written.
BatchReport run_generate(const GenerateRun& run);

}  // namespace styleclip
