// styleclip/io/face_align.h — faces in photos: detection (YuNet through cv::FaceDetectorYN) and
// the FFHQ-style aligned crop the generators were trained on, and the way back into the photo.
//
// The crop follows the reference's alignment (docs/algorithms.md §4.1,
// encoder4editing/utils/alignment.py, itself FFHQ's recipe) computed from YuNet's five landmarks
// instead of dlib's 68: the eye centres and the mouth corners are the points the recipe uses.
// Images here are [H, W, 3] uint8 RGB tensors (read_image_rgb's form).
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

namespace styleclip {

struct Point2 {
  double x = 0, y = 0;
};

/// One detected face, in the photo's pixel coordinates.
struct Face {
  double x = 0, y = 0, w = 0, h = 0;  ///< box
  double score = 0;
  /// YuNet's order: right eye, left eye (the subject's; the right eye is on the image's left),
  /// nose tip, right mouth corner, left mouth corner.
  std::array<Point2, 5> landmarks;
  [[nodiscard]] double area() const { return w * h; }
  [[nodiscard]] nlohmann::json to_json() const;
};

/// YuNet face detector. Throws a bundle error naming the file when the model cannot be loaded.
class FaceDetector {
 public:
  explicit FaceDetector(const std::filesystem::path& model, double score_threshold = 0.8);
  ~FaceDetector();
  FaceDetector(const FaceDetector&) = delete;
  FaceDetector& operator=(const FaceDetector&) = delete;

  /// Faces in `rgb` [H, W, 3] uint8, largest first. A photo whose longer side exceeds
  /// `max_side` is scaled down for detection and the results are mapped back.
  [[nodiscard]] std::vector<Face> detect(const torch::Tensor& rgb, int max_side = 1280) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The FFHQ crop of a face: an oriented square in the photo (quad corners: top-left,
/// bottom-left, bottom-right, top-right of the crop) and the size it is resampled to.
struct Alignment {
  std::array<Point2, 4> quad;
  double qsize = 0;  ///< side of the square in photo pixels
  int size = 256;    ///< side of the aligned crop
  /// crop pixel (u, v) → photo position: x = m[0]·u + m[1]·v + m[2], y = m[3]·u + m[4]·v + m[5]
  [[nodiscard]] std::array<double, 6> crop_to_photo() const;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// The reference's quad from the eye centres and mouth corners (docs/algorithms.md §4.1):
/// x = eye_to_eye − rot90(eye_to_mouth), scaled to max(2·|eye_to_eye|, 1.8·|eye_to_mouth|);
/// y = rot90(x); centre = eye_avg + 0.1·eye_to_mouth.
Alignment ffhq_alignment(const std::array<Point2, 5>& landmarks, int size);

/// The aligned crop [size, size, 3] uint8: the photo shrunk by an integer factor first when the
/// quad is more than twice the output size (antialiasing, as the recipe), then sampled
/// bilinearly over the quad; where the quad leaves the photo, reflected pixels blended with a
/// blur (σ = 0.02·qsize) and the photo's median colour, with FFHQ's ramp (0.3·qsize wide).
torch::Tensor align_face(const torch::Tensor& rgb, const Alignment& alignment);

/// Pastes an edited crop [S, S, 3] uint8 back into the photo through the inverse of the
/// alignment, blended with a feathered mask (1 inside, ramping to 0 over `feather` of the crop's
/// side at its border): pixels outside the crop's square are the photo's, bit for bit.
torch::Tensor paste_back(const torch::Tensor& photo, const torch::Tensor& crop,
                         const Alignment& alignment, double feather = 0.1);

}  // namespace styleclip
