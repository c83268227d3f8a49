// Face detection and FFHQ alignment (docs/algorithms.md §4.1): see
// include/styleclip/io/face_align.h.
#include <styleclip/error.h>
#include <styleclip/io/face_align.h>

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

namespace styleclip {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

cv::Mat mat_of(const torch::Tensor& rgb) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8,
              "expected an [H, W, 3] uint8 image, got ", rgb.sizes());
  const auto c = rgb.contiguous();
  return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_8UC3, c.data_ptr())
      .clone();
}

torch::Tensor tensor_of(const cv::Mat& rgb8) {
  return torch::from_blob(rgb8.data, {rgb8.rows, rgb8.cols, 3}, torch::kUInt8).clone();
}

double norm(const Point2& p) { return std::hypot(p.x, p.y); }

}  // namespace

json Face::to_json() const {
  json lm = json::array();
  for (const auto& p : landmarks) lm.push_back({p.x, p.y});
  return {{"box", {x, y, w, h}},
          {"score", score},
          {"landmarks", lm},
          {"landmark_names",
           {"right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner"}}};
}

struct FaceDetector::Impl {
  cv::Ptr<cv::FaceDetectorYN> yunet;
};

FaceDetector::FaceDetector(const fs::path& model, double score_threshold)
    : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  if (!fs::is_regular_file(model, ec)) {
    throw usage_error("cannot read face detector '" + model.string() +
                      "': file does not exist (give a YuNet .onnx with --face-detector)");
  }
  try {
    impl_->yunet = cv::FaceDetectorYN::create(model.string(), "", cv::Size(320, 320),
                                              static_cast<float>(score_threshold), 0.3f, 5000);
  } catch (const cv::Exception& e) {
    impl_->yunet.reset();
  }
  if (impl_->yunet.empty()) {
    throw bundle_error("cannot load face detector '" + model.string() +
                       "': not a YuNet ONNX model OpenCV can read");
  }
}

FaceDetector::~FaceDetector() = default;

std::vector<Face> FaceDetector::detect(const torch::Tensor& rgb, int max_side) const {
  cv::Mat img = mat_of(rgb);
  cv::cvtColor(img, img, cv::COLOR_RGB2BGR);  // YuNet was trained on OpenCV's BGR images
  const double scale = std::min(1.0, double(max_side) / std::max(img.cols, img.rows));
  if (scale < 1.0) {
    cv::resize(img, img, cv::Size(), scale, scale, cv::INTER_AREA);
  }
  impl_->yunet->setInputSize(img.size());
  cv::Mat found;
  impl_->yunet->detect(img, found);
  std::vector<Face> faces;
  for (int r = 0; r < found.rows; ++r) {
    const auto* v = found.ptr<float>(r);  // x, y, w, h, 5 × (x, y), score
    Face f;
    f.x = v[0] / scale;
    f.y = v[1] / scale;
    f.w = v[2] / scale;
    f.h = v[3] / scale;
    for (int k = 0; k < 5; ++k)
      f.landmarks[size_t(k)] = {v[4 + 2 * k] / scale, v[5 + 2 * k] / scale};
    f.score = v[14];
    faces.push_back(f);
  }
  std::sort(faces.begin(), faces.end(),
            [](const Face& a, const Face& b) { return a.area() > b.area(); });
  return faces;
}

std::array<double, 6> Alignment::crop_to_photo() const {
  // Output pixel u covers [u, u + 1) of the square's side in units of size; its centre maps to
  // q0 + (u + ½)/S·(q3 − q0) + (v + ½)/S·(q1 − q0) (photo pixels centred on integers).
  const double s = size;
  const double ax = (quad[3].x - quad[0].x) / s, ay = (quad[3].y - quad[0].y) / s;
  const double bx = (quad[1].x - quad[0].x) / s, by = (quad[1].y - quad[0].y) / s;
  return {ax, bx, quad[0].x + 0.5 * (ax + bx), ay, by, quad[0].y + 0.5 * (ay + by)};
}

json Alignment::to_json() const {
  json q = json::array();
  for (const auto& p : quad) q.push_back({p.x, p.y});
  const auto m = crop_to_photo();
  return {{"quad", q},
          {"quad_order", "top-left, bottom-left, bottom-right, top-right of the crop"},
          {"qsize", qsize},
          {"size", size},
          {"crop_to_photo", {{m[0], m[1], m[2]}, {m[3], m[4], m[5]}}}};
}

Alignment ffhq_alignment(const std::array<Point2, 5>& lm, int size) {
  // The subject's right eye is on the image's left: it plays the recipe's eye_left.
  const Point2 eye_left = lm[0], eye_right = lm[1];
  const Point2 mouth_left = lm[3], mouth_right = lm[4];
  const Point2 eye_avg{(eye_left.x + eye_right.x) / 2, (eye_left.y + eye_right.y) / 2};
  const Point2 eye_to_eye{eye_right.x - eye_left.x, eye_right.y - eye_left.y};
  const Point2 mouth_avg{(mouth_left.x + mouth_right.x) / 2, (mouth_left.y + mouth_right.y) / 2};
  const Point2 eye_to_mouth{mouth_avg.x - eye_avg.x, mouth_avg.y - eye_avg.y};
  // x = eye_to_eye − flipud(eye_to_mouth)·[−1, 1]; flipud(v)·[−1, 1] = (−v.y, v.x).
  Point2 x{eye_to_eye.x + eye_to_mouth.y, eye_to_eye.y - eye_to_mouth.x};
  const double len = norm(x);
  if (!(len > 0)) throw input_error("face landmarks are degenerate (eyes and mouth coincide)");
  const double k = std::max(2.0 * norm(eye_to_eye), 1.8 * norm(eye_to_mouth)) / len;
  x = {x.x * k, x.y * k};
  const Point2 y{-x.y, x.x};
  const Point2 c{eye_avg.x + 0.1 * eye_to_mouth.x, eye_avg.y + 0.1 * eye_to_mouth.y};
  Alignment a;
  a.quad = {Point2{c.x - x.x - y.x, c.y - x.y - y.y}, Point2{c.x - x.x + y.x, c.y - x.y + y.y},
            Point2{c.x + x.x + y.x, c.y + x.y + y.y}, Point2{c.x + x.x - y.x, c.y + x.y - y.y}};
  a.qsize = 2 * norm(x);
  a.size = size;
  return a;
}

torch::Tensor align_face(const torch::Tensor& rgb, const Alignment& alignment) {
  cv::Mat img = mat_of(rgb);
  Alignment a = alignment;
  // Shrink by an integer factor first when the quad is over twice the output (the recipe's
  // antialiasing step), so the bilinear sampling below never skips source pixels.
  const int shrink = static_cast<int>(std::floor(a.qsize / a.size * 0.5));
  if (shrink > 1) {
    cv::resize(img, img,
               cv::Size(static_cast<int>(std::lround(double(img.cols) / shrink)),
                        static_cast<int>(std::lround(double(img.rows) / shrink))),
               0, 0, cv::INTER_AREA);
    for (auto& p : a.quad) p = {(p.x + 0.5) / shrink - 0.5, (p.y + 0.5) / shrink - 0.5};
    a.qsize /= shrink;
  }
  const auto m = a.crop_to_photo();
  const cv::Matx23d to_photo(m[0], m[1], m[2], m[3], m[4], m[5]);
  cv::Mat out;
  cv::warpAffine(img, out, to_photo, cv::Size(a.size, a.size),
                 cv::INTER_LINEAR | cv::WARP_INVERSE_MAP, cv::BORDER_REFLECT_101);

  // Where the square leaves the photo: FFHQ's blend of the reflected pixels with a blur and the
  // median colour. mask = (distance outside the photo) / pad, negative inside.
  const double w1 = img.cols - 1, h1 = img.rows - 1;
  bool outside = false;
  for (const auto& p : a.quad) outside |= p.x < 0 || p.y < 0 || p.x > w1 || p.y > h1;
  if (!outside) return tensor_of(out);
  const double pad = std::max(0.3 * a.qsize, 3.0);
  cv::Mat f, blur;
  out.convertTo(f, CV_32FC3);
  const double sigma = 0.02 * a.size;  // 0.02·qsize in photo pixels, at the crop's scale
  cv::GaussianBlur(f, blur, cv::Size(), sigma, sigma, cv::BORDER_REFLECT_101);
  std::array<float, 3> median{};
  {
    std::vector<cv::Mat> ch;
    cv::split(img, ch);
    for (int c = 0; c < 3; ++c) {
      std::vector<uint8_t> v(ch[size_t(c)].begin<uint8_t>(), ch[size_t(c)].end<uint8_t>());
      std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
      median[size_t(c)] = v[v.size() / 2];
    }
  }
  for (int v = 0; v < a.size; ++v) {
    auto* row = f.ptr<cv::Vec3f>(v);
    const auto* brow = blur.ptr<cv::Vec3f>(v);
    for (int u = 0; u < a.size; ++u) {
      const double sx = to_photo(0, 0) * u + to_photo(0, 1) * v + to_photo(0, 2);
      const double sy = to_photo(1, 0) * u + to_photo(1, 1) * v + to_photo(1, 2);
      const double mask = std::max({-sx, sx - w1, -sy, sy - h1}) / pad;
      const float wb = static_cast<float>(std::clamp(mask * 3.0 + 1.0, 0.0, 1.0));
      const float wm = static_cast<float>(std::clamp(mask, 0.0, 1.0));
      for (int c = 0; c < 3; ++c) {
        row[u][c] += (brow[u][c] - row[u][c]) * wb;
        row[u][c] += (median[size_t(c)] - row[u][c]) * wm;
      }
    }
  }
  f.convertTo(out, CV_8UC3);  // rounds and saturates
  return tensor_of(out);
}

torch::Tensor paste_back(const torch::Tensor& photo, const torch::Tensor& crop,
                         const Alignment& alignment, double feather) {
  cv::Mat out = mat_of(photo);  // a copy already: blended in place below
  const cv::Mat edited = mat_of(crop);
  if (edited.rows != alignment.size || edited.cols != alignment.size) {
    throw input_error("edited crop is " + std::to_string(edited.cols) + "x" +
                      std::to_string(edited.rows) + ", expected the alignment's " +
                      std::to_string(alignment.size) + "x" + std::to_string(alignment.size));
  }
  const auto m = alignment.crop_to_photo();
  const cv::Matx23d to_photo(m[0], m[1], m[2], m[3], m[4], m[5]);
  // Feathered mask over the crop: 1 inside, linear to 0 at the border over feather·S pixels.
  // The outermost pixels are 0 themselves: bilinear sampling then stays inside the square (a
  // mask that is non-zero at the border would leak a crop pixel beyond it, several photo pixels
  // when the crop is small).
  const int s = alignment.size;
  const double ramp = std::max(1.0, feather * s);
  cv::Mat mask(s, s, CV_32F);
  for (int v = 0; v < s; ++v) {
    for (int u = 0; u < s; ++u) {
      const double d = std::min({u, s - 1 - u, v, s - 1 - v});
      mask.at<float>(v, u) = static_cast<float>(std::clamp(d / ramp, 0.0, 1.0));
    }
  }
  cv::Mat warped, wmask, ef;
  edited.convertTo(ef, CV_32FC3);
  cv::warpAffine(ef, warped, to_photo, out.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  cv::warpAffine(mask, wmask, to_photo, out.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  for (int y = 0; y < out.rows; ++y) {
    auto* o = out.ptr<cv::Vec3b>(y);
    const auto* w = warped.ptr<cv::Vec3f>(y);
    const auto* k = wmask.ptr<float>(y);
    for (int x = 0; x < out.cols; ++x) {
      if (k[x] <= 0.f) continue;  // the photo's own pixels, untouched
      for (int c = 0; c < 3; ++c) {
        o[x][c] = cv::saturate_cast<uint8_t>(o[x][c] * (1.f - k[x]) + w[x][c] * k[x]);
      }
    }
  }
  return tensor_of(out);
}

}  // namespace styleclip
