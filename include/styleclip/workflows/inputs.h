// styleclip/workflows/inputs.h — the W+ codes a command works on: sampled seeds and rows of latent
// files, each with a predictable output name and a description for the sidecar. A latent file that
// cannot be read becomes one failed item (named, with the reason) so that a batch goes on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/models/generator.h>

#include <styleclip/workflows/batch.h>

namespace styleclip {

struct PhotoFace;  // photo.h

struct InputItem {
  std::string
      name;  ///< "seed0007", a latent file's stem, or "<stem>_003" for row 3 of a batch file
  nlohmann::json input;  ///< what the sidecar records about where it came from
  torch::Tensor ws;      ///< [1, num_ws, w_dim] on the generator's device; undefined on error
  std::string error;     ///< why this input cannot be used (then ws is undefined)
  /// For a photo: its face, alignment and inversion (ws is the inversion's), else null.
  std::shared_ptr<PhotoFace> photo;
  /// For style codes (a `.styles.pt` input): per style layer [1, C_l] on the generator's device;
  /// ws is then undefined.
  std::vector<torch::Tensor> styles;
};

/// A latent file read (ws [N, num_ws, w_dim] on the CPU), or the reason it could not be.
struct LoadedFile {
  InputFile file;
  torch::Tensor ws;
  std::string error;
};

/// Every row of every `.styles.pt` file as an item named after the file (without `.styles`;
/// `_00k` per row of a multi-row file); a file that cannot be read is one item carrying its
/// error.
std::vector<InputItem> collect_styles(const Generator& gen, const std::vector<InputFile>& files);

/// Reads every file; failures are recorded, not thrown.
std::vector<LoadedFile> load_latent_files(const std::vector<InputFile>& files, int64_t num_ws,
                                          int64_t w_dim);

/// Nothing usable at all is the run's error, thrown before anything is written: when there are
/// no `other_inputs` (seeds, photos) and no file could be read, throws the one file's error, or
/// "none of the N inputs could be read; the first: …".
void require_some_readable(const std::vector<LoadedFile>& files, bool other_inputs);

/// Marks (with an error) the later of two items from different sources that would write the same
/// output name.
void mark_name_clashes(std::vector<InputItem>& items);

/// Seeds first (z → mapping, with the class label of `class_index` for a conditional generator →
/// truncation toward w_avg → W+), then every row of every file (a failed file is one item
/// carrying its error).
std::vector<InputItem> collect_inputs(const Generator& gen, const std::vector<uint64_t>& seeds,
                                      double truncation, std::optional<int64_t> class_index,
                                      const std::vector<LoadedFile>& files);

/// "7", "0-7", "1,4,9-11" → seeds. Throws a usage error naming the option on anything else.
std::vector<uint64_t> parse_seeds(const std::string& spec);

/// Usage error naming --seed when the bundle cannot draw one of `seeds` (numpy's RandomState,
/// NVIDIA's convention, takes seeds up to 2^32 − 1 only).
void check_seeds(const std::vector<uint64_t>& seeds, const GeneratorInfo& info,
                 const std::filesystem::path& models);

/// StyleGAN3's input transform asked for with `--translate X,Y` and `--rotate DEG`.
struct InputTransform {
  double x = 0, y = 0, degrees = 0;
  [[nodiscard]] bool any() const { return x != 0 || y != 0 || degrees != 0; }
  /// For sidecars: {"translate": [x, y], "rotate": degrees}.
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Parses `translate` ("X,Y"; empty: none) and checks both against the bundle before any model
/// loads: usage errors naming --translate (not two finite numbers) or --translate/--rotate (a
/// generator other than StyleGAN3, which has no input transform).
InputTransform check_input_transform(const std::string& translate, double rotate,
                                     const GeneratorInfo& info);

/// Sets `t` on the generator when any part is non-zero.
void apply_input_transform(Generator& gen, const InputTransform& t);

/// Checks `--class` against the bundle, before any model loads: required (and within
/// 0..c_dim−1) on a conditional generator when the run samples z (`samples_z`), refused on an
/// unconditional one, and refused where nothing is sampled (`sampled_by` names the option that
/// samples, e.g. "--seed"). Returns the class to use (nullopt: none).
std::optional<int64_t> check_class(const std::optional<int64_t>& flag, const GeneratorInfo& info,
                                   const std::filesystem::path& models, bool samples_z,
                                   const std::string& sampled_by);

}  // namespace styleclip
