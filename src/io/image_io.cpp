#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

namespace styleclip {
namespace fs = std::filesystem;

torch::Tensor to_uint8_hwc(const torch::Tensor& chw) {
  TORCH_CHECK(chw.dim() == 3 && chw.size(0) == 3, "expected a [3, H, W] image, got ", chw.sizes());
  auto x = chw.detach().to(torch::kCPU, torch::kFloat32);
  x = torch::floor((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0 + 0.5);
  return x.permute({1, 2, 0}).to(torch::kUInt8).contiguous();
}

namespace {

cv::Mat to_bgr_mat(const torch::Tensor& chw) {
  const auto hwc = to_uint8_hwc(chw);
  // from_blob does not own the data: clone into a Mat that does before `hwc` goes away.
  cv::Mat rgb(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3,
              hwc.data_ptr());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

void write_mat(const fs::path& path, const cv::Mat& bgr) {
  std::string ext = path.extension().string();
  if (ext.empty()) ext = ".png";
  write_via_temp(path, [&](const fs::path& tmp) {
    std::vector<uchar> buf;
    bool ok = false;
    try {
      ok = cv::imencode(ext, bgr, buf);
    } catch (const cv::Exception&) {
      ok = false;
    }
    if (!ok)
      throw usage_error("cannot write image '" + path.string() + "': unsupported format '" + ext +
                        "'");
    write_file_atomic(tmp, std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
  });
}

}  // namespace

void write_image(const fs::path& path, const torch::Tensor& chw) {
  write_mat(path, to_bgr_mat(chw));
}

std::string encode_png(const torch::Tensor& chw) {
  std::vector<uchar> buf;
  if (!cv::imencode(".png", to_bgr_mat(chw), buf)) throw input_error("cannot encode a PNG image");
  return {reinterpret_cast<const char*>(buf.data()), buf.size()};
}

void write_image_row(const fs::path& path, const std::vector<torch::Tensor>& chws) {
  std::vector<cv::Mat> mats;
  for (const auto& t : chws) mats.push_back(to_bgr_mat(t));
  cv::Mat row;
  cv::hconcat(mats, row);
  write_mat(path, row);
}

bool write_video(const fs::path& path, const std::vector<fs::path>& frames, double fps) {
  if (frames.empty()) return false;
  const cv::Mat first = cv::imread(frames.front().string(), cv::IMREAD_COLOR);
  if (first.empty()) return false;
  bool ok = true;
  try {
    write_via_temp(path, [&](const fs::path& tmp) {
      // OpenCV picks the container from the extension: keep ".mp4" last in the temporary name.
      cv::VideoWriter writer(tmp.string(), cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps,
                             first.size());
      if (!writer.isOpened()) throw usage_error("no MP4 writer");
      for (const auto& f : frames) {
        cv::Mat img = cv::imread(f.string(), cv::IMREAD_COLOR);
        if (img.size() != first.size()) throw usage_error("frame size changed");
        writer.write(img);
      }
      writer.release();
    });
  } catch (const std::exception&) {
    ok = false;
  }
  return ok;
}

torch::Tensor resize_square(const torch::Tensor& hwc, int size) {
  const auto c = hwc.contiguous();
  const cv::Mat src(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_8UC3,
                    c.data_ptr());
  if (src.rows == size && src.cols == size) return c.clone();
  cv::Mat dst;
  const bool shrink = src.rows > size || src.cols > size;
  cv::resize(src, dst, cv::Size(size, size), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_CUBIC);
  return torch::from_blob(dst.data, {size, size, 3}, torch::kUInt8).clone();
}

torch::Tensor fit_height(const torch::Tensor& hwc, int max_height) {
  const auto h = hwc.size(0);
  const auto w = hwc.size(1);
  if (h <= max_height) return hwc;
  const auto src_t = hwc.contiguous();
  const cv::Mat src(static_cast<int>(h), static_cast<int>(w), CV_8UC3, src_t.data_ptr());
  const int width = std::max(1, static_cast<int>(std::lround(double(w) * max_height / double(h))));
  cv::Mat dst;
  cv::resize(src, dst, cv::Size(width, max_height), 0, 0, cv::INTER_AREA);
  return torch::from_blob(dst.data, {max_height, width, 3}, torch::kUInt8).clone();
}

torch::Tensor to_generator_range(const torch::Tensor& hwc) {
  return hwc.permute({2, 0, 1}).to(torch::kFloat32) / 127.5 - 1.0;
}

std::optional<std::pair<int64_t, int64_t>> peek_image_size(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::vector<unsigned char> head(64 * 1024);
  f.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(f.gcount()));
  const auto be16 = [&](size_t i) { return (int64_t{head[i]} << 8) | head[i + 1]; };
  const auto be32 = [&](size_t i) { return (be16(i) << 16) | be16(i + 2); };
  // PNG: the signature, then the IHDR chunk with width and height (big-endian) at bytes 16..23.
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (head.size() >= 24 && std::equal(png, png + 8, head.begin()) &&
      std::equal(head.begin() + 12, head.begin() + 16, "IHDR")) {
    return std::make_pair(be32(16), be32(20));
  }
  // JPEG: walk the marker segments to the first start-of-frame (SOF0..SOF15 except DHT 0xC4,
  // JPG 0xC8, DAC 0xCC): height at +5, width at +7. The header must lie in the first 64 KiB
  // (EXIF thumbnails can push it further: then decoding decides).
  if (head.size() >= 4 && head[0] == 0xFF && head[1] == 0xD8) {
    size_t i = 2;
    while (i + 9 < head.size()) {
      if (head[i] != 0xFF) return std::nullopt;
      const unsigned char m = head[i + 1];
      if (m == 0xFF) {
        ++i;  // fill byte
        continue;
      }
      if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
        return std::make_pair(be16(i + 7), be16(i + 5));
      }
      i += 2 + static_cast<size_t>(be16(i + 2));
    }
  }
  return std::nullopt;
}

torch::Tensor read_image_rgb(const fs::path& path, int64_t max_pixels) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw input_error("cannot read image '" + path.string() + "': file does not exist");
  if (fs::is_directory(path, ec))
    throw input_error("cannot read image '" + path.string() + "': it is a folder");
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) == 0) {
    throw input_error("cannot read image '" + path.string() + "': file is empty");
  }
  const auto too_large = [&](int64_t w, int64_t h) {
    return input_error("cannot read image '" + path.string() + "': " + std::to_string(w) + "x" +
                       std::to_string(h) + " is more than --max-pixels " +
                       std::to_string(max_pixels) + " pixels (raise --max-pixels if it is real)");
  };
  if (const auto size = peek_image_size(path)) {
    if (size->first * size->second > max_pixels) throw too_large(size->first, size->second);
  }
  cv::Mat img;
  try {
    // ANYCOLOR | ANYDEPTH rather than UNCHANGED: the same pixels (alpha dropped), but with the
    // EXIF orientation applied, as a camera's JPEG must be (UNCHANGED ignores it).
    img = cv::imread(path.string(), cv::IMREAD_ANYCOLOR | cv::IMREAD_ANYDEPTH);
  } catch (const cv::Exception&) {
    img = cv::Mat();
  }
  if (img.empty()) {
    throw input_error("cannot read image '" + path.string() +
                      "': not an image OpenCV can decode (use PNG, JPEG, WebP, TIFF or BMP)");
  }
  if (int64_t{img.cols} * img.rows > max_pixels) throw too_large(img.cols, img.rows);
  if (img.depth() == CV_16U) img.convertTo(img, CV_8U, 1.0 / 257.0);
  if (img.depth() != CV_8U) {
    cv::Mat tmp;
    img.convertTo(tmp, CV_8U);
    img = tmp;
  }
  cv::Mat rgb;
  switch (img.channels()) {
    case 1:
      cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 3:
      cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(img, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      throw input_error("cannot read image '" + path.string() +
                        "': " + std::to_string(img.channels()) + " channels are not supported");
  }
  auto t = torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8);
  return t.clone();  // own the pixels: `rgb` dies at the end of this function
}

}  // namespace styleclip
