// styleclip/workflows/photo.h — a photo made editable: read, detect the face, FFHQ-align it, invert
// the crop to W+ (engines/invert), and cache the inversion beside the outputs. Shared by
// `styleclip invert` and `styleclip edit PHOTO`, so that inverting a photo with one and editing it
// with the other reuses the same cache.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/invert.h>
#include <styleclip/engines/pti.h>
#include <styleclip/io/face_align.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/encoder.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/models/lpips.h>

namespace styleclip {

/// Image file extensions taken as photos (everything else is a latent file).
bool is_photo_path(const std::filesystem::path& path);

/// The default of `--max-pixels`: larger than any camera's photo (200 MP phones exist), small
/// enough that a decompression bomb is refused before it is decoded.
inline constexpr int64_t kDefaultMaxPixels = 250'000'000;

/// How photos are found and inverted: the options `invert` and `edit` share.
struct PhotoOptions {
  std::string detector;    ///< --face-detector (default: the bundle's face_detector.onnx)
  bool aligned = false;    ///< inputs are aligned crops: no detection, no paste-back
  bool overwrite = false;  ///< invert again even when the cache matches
  /// --with: "auto" (the encoder when the bundle has one, else optimize), "encoder" (e4e alone,
  /// milliseconds), "optimize" (the projector, from the encoder's answer when there is one) or
  /// "pti" (optimize, then the generator tuned around that pivot: engines/pti.h).
  std::string with = "auto";
  int64_t max_pixels = kDefaultMaxPixels;
  InvertOptions engine;
  PtiOptions pti;
};

/// One photo's face, ready to edit.
struct PhotoFace {
  std::filesystem::path path;
  std::string name;  ///< the output name: the path below its input folder without extension
  /// The photo's size; its pixels are not kept (a folder of photos must not sit in memory):
  /// paste-back reads the photo again.
  int64_t width = 0, height = 0;
  torch::Tensor crop;                  ///< [R, R, 3] uint8: what was inverted
  std::optional<Alignment> alignment;  ///< none for aligned inputs (then no paste-back)
  nlohmann::json detection = nullptr;  ///< the face and the alignment, for sidecars
  int faces_found = 0;
  torch::Tensor ws;    ///< [1, num_ws, w_dim] on the CPU
  double psnr = 0;     ///< reconstruction vs crop, dB
  std::string method;  ///< "encoder", "optimize", "encoder+optimize", and "+pti" when tuned
  std::optional<double> identity;  ///< identity similarity, when the bundle has a model
  bool cached = false;
  std::filesystem::path latent_file, sidecar_file;
  std::filesystem::path pti_weights;  ///< the tuned generator's weights (--with pti), else empty
  [[nodiscard]] nlohmann::json to_json() const;  ///< the stages, for the edit's sidecar
};

/// Detects, aligns and inverts photos, caching each inversion in `out_dir` as
/// `<name>.latent.pt` + `<name>.invert.json` (+ `.target.png`, `.inverted.png`), keyed by the
/// image's checksum, the generator's checksum and the options.
class PhotoInverter {
 public:
  /// `clip` may be null when the options' clip_lambda is 0; `identity` may be null.
  PhotoInverter(const Bundle& bundle, const std::filesystem::path& models, const Generator& gen,
                const Clip* clip, const IdentityModel* identity, const PhotoOptions& options,
                std::filesystem::path out_dir);
  ~PhotoInverter();
  PhotoInverter(const PhotoInverter&) = delete;
  PhotoInverter& operator=(const PhotoInverter&) = delete;

  /// --with resolved against the bundle: "encoder", "optimize" or "encoder+optimize", with
  /// "+pti" for --with pti.
  static std::string method_for(const Bundle& bundle, const PhotoOptions& options);
  /// Whether the projector's perceptual term is LPIPS (the bundle has it, its weight is on).
  static bool uses_lpips(const Bundle& bundle, const PhotoOptions& options);
  /// Whether the projector needs CLIP (no LPIPS in use and --clip-lambda on).
  static bool needs_clip(const Bundle& bundle, const PhotoOptions& options);

  /// The projector's perceptual term: "lpips" (the bundle has LPIPS), "clip" or "none".
  [[nodiscard]] std::string perceptual() const;

  /// The files `invert` writes for the photo named `name` (latent, sidecar, target,
  /// reconstruction, tuned weights).
  [[nodiscard]] std::vector<std::filesystem::path> cache_files(const std::string& name) const;

  /// Reads the photo and finds its face (largest first). `name` names its outputs (empty: the
  /// file's stem). Throws an input error naming the photo when it cannot be read or has no face.
  [[nodiscard]] PhotoFace locate(const std::filesystem::path& photo,
                                 const std::string& name = "") const;

  /// Fills `face.ws`: from the cache when it matches, else by the projector (writing the cache;
  /// the sidecar last, so a half-written cache is never taken for a whole one).
  void invert(PhotoFace& face) const;

  /// Called after every projector and tuning step with (stage, done, total, loss), stage
  /// "invert" or "tune"; it may throw (e.g. Error kInterrupted) to abandon the photo, which then
  /// writes nothing. For front ends that show progress elsewhere than stderr (a server's job).
  void set_step_hook(std::function<void(const std::string&, int, int, double)> hook) {
    step_hook_ = std::move(hook);
  }

 private:
  /// --with pti: tunes a copy of the generator around the pivot `r.ws`, writes the weights, and
  /// makes `r.images` the tuned reconstruction; returns the sidecar's metrics.pti.
  nlohmann::json tune_generator(PhotoFace& face, const torch::Tensor& target,
                                InvertResult& r) const;

  const Bundle& bundle_;
  std::filesystem::path models_;
  const Generator& gen_;
  const Clip* clip_;
  const IdentityModel* identity_;
  PhotoOptions options_;
  std::filesystem::path out_dir_;
  std::unique_ptr<FaceDetector> detector_;
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<Lpips> lpips_;
  std::string method_;
  std::function<void(const std::string&, int, int, double)> step_hook_;
};

}  // namespace styleclip
