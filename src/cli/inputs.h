// src/cli/inputs.h — the W+ codes a command works on: sampled seeds and rows of latent files,
// each with a predictable output name and a description for the sidecar.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/models/generator.h>

namespace styleclip::cli {

struct InputItem {
  std::string
      name;  ///< "seed0007", a latent file's stem, or "<stem>_003" for row 3 of a batch file
  nlohmann::json input;  ///< what the sidecar records about where it came from
  torch::Tensor ws;      ///< [1, num_ws, w_dim] on the generator's device
};

/// Latent files already read (path, [N, num_ws, w_dim]).
using LatentFiles = std::vector<std::pair<std::string, torch::Tensor>>;

/// Seeds first (z → mapping → truncation toward w_avg → W+), then every row of every file.
std::vector<InputItem> collect_inputs(const Generator& gen, const std::vector<uint64_t>& seeds,
                                      double truncation, const LatentFiles& latents);

}  // namespace styleclip::cli
