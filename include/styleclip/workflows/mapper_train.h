// styleclip/workflows/mapper_train.h — training a latent mapper for one prompt, with checkpoints
// (docs/algorithms.md §2.3; the training step itself is engines/mapper.h).
//
// Checkpoints every `ckpt_every` steps into `<out>.ckpt/` (mapper, optimiser state, progress) so
// `resume` continues at the same step with the same optimiser state and batch order; Ctrl-C (or
// `max_steps`) saves a checkpoint and ends with exit code 130. The finished mapper is written
// atomically to `out` and the checkpoint removed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <styleclip/engines/mapper.h>

namespace styleclip {

struct MapperTrainRun {
  std::filesystem::path models;  ///< the bundle folder
  std::string text;              ///< the prompt the mapper learns
  /// Training latent files and folders (latents.h: gather_latents), or empty: sample `sample`.
  std::vector<std::string> latents;
  int64_t sample = 0;
  double truncation = 0.7;
  std::optional<int64_t> class_index;
  std::filesystem::path out;  ///< the mapper file to write
  int64_t steps = 50000;
  MapperTrainOptions train;         ///< its id_lambda is `id_lambda`'s
  std::optional<double> id_lambda;  ///< default: 0.1 with an identity model, else 0
  PixelNormMode pixel_norm = PixelNormMode::kRows;
  int64_t val_every = 100;
  int64_t ckpt_every = 500;
  int64_t image_every = 0;  ///< write <out>.samples/stepN.png every N steps (0: never)
  int64_t max_steps = 0;    ///< stop after N steps of this run (0: run to `steps`)
  bool resume = false;
  std::string device = "auto";
  std::string precision = "auto";
};

struct MapperTrainReport {
  int exit_code = 0;       ///< 0, or 130 when stopped with a checkpoint
  nlohmann::json history;  ///< [{step, train_loss, val_clip_loss}]
  int64_t step = 0;        ///< steps done
  std::filesystem::path checkpoint;
};

/// Trains (or resumes) the mapper. Throws styleclip::Error for bad options or inputs and when the
/// loss becomes NaN/Inf (after saving a checkpoint).
MapperTrainReport train_mapper(const MapperTrainRun& run);

}  // namespace styleclip
