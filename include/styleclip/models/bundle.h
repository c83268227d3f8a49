// styleclip/models/bundle.h — a model bundle folder and its manifest.
//
// `Bundle::open` reads `manifest.json`, checks its format and version, that every listed file
// exists with the recorded size and sha256 (hashing only files written since they last matched:
// io/verify_cache.h), and that the dimensions it states are coherent. It
// does not load any model: `Generator` and `Clip` do that from a validated bundle. Errors are
// `Error` with ExitCode::kBundleInvalid and name the file, what was expected and what was found.
// A Bundle is an immutable value; copies are cheap enough (a small JSON document).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace styleclip {

/// How a seed becomes the latent z (`Generator::seed_z`): the convention of the tools the
/// checkpoint came with, so that a seed shows the same image here as there.
enum class SeedConvention {
  kTorch,             ///< `torch.manual_seed(seed); torch.randn(z_dim)` (manifest "torch")
  kNumpyRandomState,  ///< `np.random.RandomState(seed).randn(z_dim)`, as NVIDIA's generate.py
                      ///< (manifest "numpy-randomstate"); seeds 0 to 2^32 - 1 only
};
/// The manifest's spelling of a convention.
const char* to_string(SeedConvention convention);

/// The generator's architecture family: how its W+ rows and style layers are laid out.
enum class GeneratorFamily {
  kStyleGAN2,  ///< manifest "stylegan2" (or no family): rosinality's or NVIDIA's StyleGAN2
  kStyleGAN3,  ///< manifest "stylegan3": NVIDIA's alias-free generator, T or R (docs/stylegan3.md)
};
/// The manifest's spelling of a family.
const char* to_string(GeneratorFamily family);

/// Dimensions of the bundle's generator, as recorded by the exporter.
struct GeneratorInfo {
  GeneratorFamily family = GeneratorFamily::kStyleGAN2;
  int resolution = 0;
  int w_dim = 0;
  int z_dim = 0;
  int c_dim = 0;  ///< classes of a conditional generator (one-hot labels); 0: unconditional
  SeedConvention seed_convention = SeedConvention::kTorch;
  int num_ws = 0;                  ///< rows of W+
  int n_mlp = 0;                   ///< mapping network depth
  std::vector<int> style_dims;     ///< channels of each style layer, StyleSpace order
  std::vector<bool> style_is_rgb;  ///< whether each style layer is a toRGB layer
  /// Whether each style entry is StyleGAN3's input transform (4 numbers that rotate and shift
  /// the picture): kept in S so that S renders, never edited as a style channel.
  std::vector<bool> style_is_input;
  std::vector<int> style_resolutions;  ///< the side of each style layer's output, in pixels

  /// Whether style layer `l` holds editable style channels (not toRGB, not the input transform).
  [[nodiscard]] bool style_is_channel(size_t l) const {
    return !style_is_rgb.at(l) && (l >= style_is_input.size() || !style_is_input[l]);
  }
};

/// Dimensions and preprocessing of the bundle's CLIP model.
struct ClipInfo {
  int image_resolution = 0;
  int embed_dim = 0;
  int context_length = 0;
  int vocab_size = 0;
  int vocab_merges = 48894;  ///< merges the tokenizer reads (OpenAI: 49152 - 256 - 2)
  std::vector<double> image_mean;
  std::vector<double> image_std;
};

class Bundle {
 public:
  static constexpr int kFormatVersion = 1;

  /// How `open` checks the files' sha256 against the manifest (sizes are always checked).
  enum class Verify {
    kNone,     ///< sizes only
    kChanged,  ///< hash the files not known unchanged since they last hashed right
               ///< (io/verify_cache.h)
    kAll,      ///< hash every file (`styleclip info`)
  };

  /// Opens and validates the bundle in `dir`. Hashing runs at about 1 GB/s here (200 MB/s on a
  /// CPU without SHA instructions), 2 GB for a real bundle with every model: hence kChanged, the
  /// default, which hashes a file again only after it was written.
  static Bundle open(const std::filesystem::path& dir, Verify verify = Verify::kChanged);

  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] const nlohmann::json& manifest() const { return manifest_; }

  /// Whether the manifest lists the part ("generator", "clip", "vocab", ...).
  [[nodiscard]] bool has(const std::string& part) const;
  /// The file of a part; throws a bundle error naming the part when it is absent.
  [[nodiscard]] std::filesystem::path file(const std::string& part) const;
  [[nodiscard]] std::string sha256(const std::string& part) const;
  /// Names of the parts listed, sorted.
  [[nodiscard]] std::vector<std::string> parts() const;

  /// Throws a bundle error when the bundle has no generator.
  [[nodiscard]] const GeneratorInfo& generator() const;
  /// Throws a bundle error when the bundle has no CLIP model.
  [[nodiscard]] const ClipInfo& clip() const;

  /// {part: sha256} of every file, for sidecars (what exactly ran).
  [[nodiscard]] nlohmann::json checksums() const;

  /// Adds (or replaces) a part in the manifest of the bundle in `dir`: `file` (inside `dir`) is
  /// listed under files.<part> with its size and sha256, and `section`, when not null, becomes the
  /// manifest's top-level <part> entry. The manifest is rewritten atomically. The one C++ writer
  /// of the format `open` reads (docs/bundle-format.md; the exporters write the rest).
  static void add_part(const std::filesystem::path& dir, const std::string& part,
                       const std::filesystem::path& file, const nlohmann::json& section);

  /// How many files `open` hashed (the others were known unchanged, or not verified).
  [[nodiscard]] int files_hashed() const { return files_hashed_; }

 private:
  std::filesystem::path dir_;
  nlohmann::json manifest_;
  std::optional<GeneratorInfo> generator_;
  std::optional<ClipInfo> clip_;
  int files_hashed_ = 0;
};

}  // namespace styleclip
