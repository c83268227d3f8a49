// CLIP's photo preprocessing (clip/clip.py `_transform`, PIL bicubic) reproduced with OpenCV
// decoding and LibTorch's antialiased bicubic: built where OpenCV is (it reads PNGs).
#include <styleclip/io/image_io.h>
#include <styleclip/models/clip.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {

TEST(ClipPhotos, PreprocessingMatchesPilAndEmbeddingsAgree) {
  SKIP_UNLESS_FIXTURE("clip-openai/tiny_expected.pt");
  SKIP_UNLESS_BUNDLE("clip_jit");
  torch::NoGradGuard no_grad;
  const auto dir = test::fixtures_dir() / "clip-openai";
  const auto expected = test::load_pt(dir / "tiny_expected.pt");
  const auto want_pixels = test::dict_tensor(expected, "pixels");
  const auto want = test::dict_tensor(expected, "image_embeddings");
  const auto names = nlohmann::json::parse(test::read_text(dir / "tiny.json"))["images"];
  const Clip clip(Bundle::open(test::testdata("clip_jit")), torch::kCPU);
  for (size_t i = 0; i < names.size(); ++i) {
    const auto name = names[i].get<std::string>();
    const auto pixels = clip.preprocess(read_image_rgb(dir / "images" / name));
    const auto k = static_cast<int64_t>(i);
    // PIL's and LibTorch's bicubic differ by a level or two on some pixels: compare means.
    const double mean_diff = (pixels[0] - want_pixels[k]).abs().mean().item<double>();
    EXPECT_LT(mean_diff, 0.02) << name;
    const double cos =
        torch::cosine_similarity(clip.encode_pixels(pixels)[0], want[k], 0).item<double>();
    EXPECT_GE(cos, 0.999) << name;
    std::printf("%s: mean |pixel diff| %.5f (normalised units), cosine %.6f\n", name.c_str(),
                mean_diff, cos);
  }
}

}  // namespace
}  // namespace styleclip
