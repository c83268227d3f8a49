// styleclip/workflows/latents.h — latent datasets: many latent files and folders gathered into
// one [N, num_ws, w_dim] tensor, for `latents pack` and `mapper train --latents`.
//
// Folders contribute the latents that `invert`, `generate` and `edit` write (`*.latent.pt`) unless
// other patterns are given; every file is read as latent_io.h reads it (.pt or .npy, the shapes
// it normalises), in sorted order. A file that cannot be read is listed with its reason and left
// out; nothing readable at all is an input error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/models/bundle.h>

namespace styleclip {

/// The folder patterns of latent datasets: what this tool writes as latents.
std::vector<std::string> latent_globs();

struct GatheredLatents {
  torch::Tensor ws;        ///< [N, num_ws, w_dim] float32 on the CPU
  nlohmann::json sources;  ///< [{"file": absolute path, "first": row, "rows": n}] in row order
  nlohmann::json failed;   ///< [{"file", "error"}]
};

/// Reads every latent file of `paths` (files, and folders searched with `globs`, default
/// latent_globs(), descending when `recursive`). Throws an input error when none can be read
/// (naming the one file, or the first of several), a usage error for a missing path.
GatheredLatents gather_latents(const std::vector<std::string>& paths, bool recursive,
                               const std::vector<std::string>& globs, const GeneratorInfo& info);

struct PackRun {
  std::filesystem::path models;     ///< the bundle whose generator the latents are for
  std::vector<std::string> inputs;  ///< latent files and folders
  bool recursive = false;
  std::vector<std::string> globs;  ///< empty: latent_globs()
  std::filesystem::path out;       ///< FILE.pt; its sidecar is FILE.json
};

struct PackReport {
  std::filesystem::path out, sidecar;
  int64_t rows = 0;
  std::size_t files = 0, failed = 0;
  int exit_code = 0;  ///< 0, or 1 when some files could not be read (they are in the sidecar)
};

/// Writes the gathered latents to `out` (a torch.save-compatible tensor, atomically) and then the
/// sidecar: {"command", "rows", "num_ws", "w_dim", "generator_sha256", "sources", "failed"}.
PackReport pack_latents(const PackRun& run);

}  // namespace styleclip
