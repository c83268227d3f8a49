// styleclip/io/image_io.h — images in and out; the only place where cv::Mat meets tensors.
//
// Conventions (docs/conventions.md habit 6): tensors are RGB, CHW, float; generator images are in
// [-1, 1] and become 8-bit with floor((clamp(x, -1, 1) + 1) / 2 · 255 + 0.5) (docs/cli.md, the
// image conventions). OpenCV is BGR, HWC, uint8: the conversion is explicit here and nowhere else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace styleclip {

/// [3, H, W] float image in [-1, 1] → [H, W, 3] uint8 RGB on the CPU.
torch::Tensor to_uint8_hwc(const torch::Tensor& chw);

/// Writes a [3, H, W] generator image as an 8-bit RGB PNG (or JPEG, by extension), atomically.
void write_image(const std::filesystem::path& path, const torch::Tensor& chw);

/// A [3, H, W] generator image as the bytes of an 8-bit RGB PNG (e.g. for an HTTP response).
std::string encode_png(const torch::Tensor& chw);

/// Images side by side (same height), e.g. before | after.
void write_image_row(const std::filesystem::path& path, const std::vector<torch::Tensor>& chws);

/// Assembles image files (same size) into an MP4 video (OpenCV's VideoWriter, 'mp4v'),
/// atomically. Returns false, writing nothing, when this OpenCV build cannot write MP4.
bool write_video(const std::filesystem::path& path,
                 const std::vector<std::filesystem::path>& frames, double fps);

/// [H, W, 3] uint8 RGB resized to [size, size, 3] (area averaging when shrinking, bicubic when
/// growing): an aligned crop brought to the generator's resolution.
torch::Tensor resize_square(const torch::Tensor& hwc, int size);

/// [H, W, 3] uint8 RGB shrunk (area averaging) to at most `max_height` rows, aspect kept; the
/// image itself when it is no taller.
torch::Tensor fit_height(const torch::Tensor& hwc, int max_height);

/// [H, W, 3] uint8 RGB → [3, H, W] float in [-1, 1] (the generator's range).
torch::Tensor to_generator_range(const torch::Tensor& hwc);

/// The width and height a PNG or JPEG file declares in its header, read without decoding; nullopt
/// for other formats or a header that cannot be parsed (then decoding decides).
std::optional<std::pair<int64_t, int64_t>> peek_image_size(const std::filesystem::path& path);

/// Reads an image file as [H, W, 3] uint8 RGB (greyscale and RGBA converted, 16-bit scaled, EXIF
/// orientation applied). Throws an input error naming the file when it is missing, empty, not an
/// image, or has more than `max_pixels` pixels (checked from the header before decoding where the
/// format allows: a decompression bomb is refused before it takes the memory).
torch::Tensor read_image_rgb(const std::filesystem::path& path,
                             int64_t max_pixels = int64_t{1} << 30);

}  // namespace styleclip
