// End-to-end on StyleGAN3 bundles (test bundles `sg3t` and `sg3r`, exported from NVIDIA-format
// pickles): every engine and the projector, the style-space layout the manifest states, and the
// input transform (--translate/--rotate) as NVIDIA's gen_images.py applies it.
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/generator.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::run_ok;
using test::styleclip;
using test::TempDir;

class StyleGAN3 : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_UNLESS_BUNDLE(GetParam()); }
  [[nodiscard]] std::string bundle() const { return test::testdata(GetParam()).string(); }
  TempDir tmp_;
};

TEST_P(StyleGAN3, TheManifestDescribesTheStyleLayout) {
  const auto info = Bundle::open(bundle()).generator();
  EXPECT_EQ(info.family, GeneratorFamily::kStyleGAN3);
  ASSERT_EQ(info.style_dims.size(), static_cast<size_t>(info.num_ws));
  EXPECT_EQ(info.style_dims.front(), 4);  // the input transform's rotation and translation
  const Generator gen(Bundle::open(bundle()), torch::kCPU);
  torch::NoGradGuard no_grad;
  const auto ws = gen.broadcast(gen.w_avg().unsqueeze(0));
  const auto s = gen.styles(ws);
  ASSERT_EQ(s.size(), info.style_dims.size());
  // Synthesis from S is synthesis from W+; the split used by global preparation is the same too.
  const auto img = gen.synthesis(ws);
  EXPECT_TRUE(test::tensors_close(gen.synthesis_from_styles(s), img, 1e-5));
  for (int64_t l = 0; l < static_cast<int64_t>(s.size()); ++l) {
    const auto upto = gen.conv_index_of_layer(l);
    if (upto < 0) continue;
    const auto rest = gen.synthesis_suffix(gen.synthesis_prefix(s, upto), upto, s);
    EXPECT_TRUE(test::tensors_close(rest, img, 1e-5)) << "layer " << l;
  }
}

TEST_P(StyleGAN3, EveryEngineAndTheProjector) {
  const auto b = test::copy_testdata(GetParam(), tmp_ / "bundle").string();
  // Engine 1: optimisation in W+ and in S (where the input transform stays as it was).
  run_ok({"edit", "--models", b, "--text", "a red face", "--seed", "3", "--steps", "4"},
         tmp_ / "opt", {"seed0003.a-red-face.optimize.png", "seed0003.a-red-face.optimize.json"});
  run_ok({"edit", "--models", b, "--text", "a red face", "--seed", "3", "--steps", "4", "--space",
          "S"},
         tmp_ / "opt_s", {"seed0003.a-red-face.optimize.styles.pt"});
  // Neither engine moves what drives the input transform (W+ row 0, style entry 0): an edit
  // changes the picture's content, not where it sits.
  const auto edited_s = test::load_pt(tmp_ / "opt_s" / "seed0003.a-red-face.optimize.styles.pt");
  const auto edited_w = read_tensor_file(tmp_ / "opt" / "seed0003.a-red-face.optimize.latent.pt");
  const Generator gen(Bundle::open(b), torch::kCPU);
  torch::NoGradGuard no_grad;
  const auto w3 = gen.broadcast(gen.truncate(gen.mapping(gen.seed_z(3).unsqueeze(0)), 0.7));
  const auto s0 = gen.styles(w3);
  const auto s1 = edited_s.toTensorVector();
  EXPECT_TRUE(test::tensors_close(s1.front(), s0.front(), 1e-6)) << "the transform moved";
  EXPECT_FALSE(test::tensors_close(s1[1], s0[1], 1e-6)) << "the first layer did not move";
  EXPECT_TRUE(test::tensors_close(edited_w[0][0], w3[0][0], 1e-6)) << "W+ row 0 moved";
  EXPECT_FALSE(test::tensors_close(edited_w[0][1], w3[0][1], 1e-6)) << "W+ row 1 did not move";
  // Engine 2: a mapper trained on this generator, then applied.
  const auto mapper = (tmp_ / "red.mapper.pt").string();
  auto r = styleclip({"mapper", "train", "--models", b, "--text", "a red face", "--sample", "8",
                      "--steps", "3", "--optimizer", "adam", "--out", mapper});
  ASSERT_EQ(r.code, 0) << r.err;
  run_ok({"edit", "--models", b, "--method", "mapper", "--mapper", mapper, "--seed", "0-1"},
         tmp_ / "map", {"seed0000.a-red-face.mapper.png", "seed0001.a-red-face.mapper.png"});
  const auto mapped = read_tensor_file(tmp_ / "map" / "seed0000.a-red-face.mapper.latent.pt");
  const auto w0 = gen.broadcast(gen.truncate(gen.mapping(gen.seed_z(0).unsqueeze(0)), 0.7));
  EXPECT_TRUE(test::tensors_close(mapped[0][0], w0[0][0], 1e-6)) << "the mapper moved row 0";
  EXPECT_FALSE(test::tensors_close(mapped[0][1], w0[0][1], 1e-6));
  // Engine 3: global directions for two synthesis layers; the input transform is not one.
  r = styleclip({"global", "prepare", "--models", b, "--layers", "0", "--samples", "50"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("is StyleGAN3's input transform, not a style layer"), std::string::npos)
      << r.err;
  r = styleclip({"global", "prepare", "--models", b, "--samples", "200", "--images", "2",
                 "--layers", "1,3", "--chunk", "16", "--batch", "16"});
  ASSERT_EQ(r.code, 0) << r.err;
  run_ok({"edit", "--models", b, "--method", "global", "--neutral", "a face", "--text",
          "a red face", "--seed", "2", "--threshold", "0"},
         tmp_ / "glob", {"seed0002.a-red-face.global.png"});
  // The projector: invert an image the generator made.
  run_ok({"generate", "--models", b, "--seed", "5", "-q"}, tmp_ / "gen", {"seed0005.png"});
  run_ok({"invert", "--models", b, "--aligned", (tmp_ / "gen" / "seed0005.png").string(), "--with",
          "optimize", "--steps", "30"},
         tmp_ / "inv", {"seed0005.latent.pt", "seed0005.invert.json"});
  const auto side = json::parse(test::read_text(tmp_ / "inv" / "seed0005.invert.json"));
  EXPECT_GT(side["metrics"]["psnr"].get<double>(), side["metrics"]["psnr_start"].get<double>());
}

TEST_P(StyleGAN3, AStyleGAN2MapperIsRefused) {
  const auto mapper = (tmp_ / "sg2.mapper.pt").string();
  auto r = styleclip({"mapper", "train", "--models", test::testdata("tiny").string(), "--text",
                      "a face", "--sample", "4", "--steps", "1", "--out", mapper});
  ASSERT_EQ(r.code, 0) << r.err;
  r = styleclip({"edit", "--models", bundle(), "--method", "mapper", "--mapper", mapper, "--seed",
                 "0", "--out", (tmp_ / "o").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("was trained for a stylegan2 generator; this bundle's is stylegan3"),
            std::string::npos)
      << r.err;
}

/// Mean absolute difference of two images [B, 3, H, W].
double mean_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().mean().item<double>();
}

TEST_P(StyleGAN3, TranslateAndRotateMoveThePictureAsNvidiasTransformDoes) {
  // NVIDIA's gen_images.py stores the inverse of [[cos a, sin a, x], [-sin a, cos a, y], [0, 0, 1]]
  // in the input layer: the picture moves by (x, y) picture widths, +x to the right and +y down,
  // and turns by a degrees counter-clockwise as displayed. A shift of 1/8 picture is 4 pixels at
  // 32 px: the alias-free layers carry it through the whole network, so the moved picture is the
  // plain one shifted (the columns that come in from outside aside).
  Generator gen(Bundle::open(bundle()), torch::kCPU);
  torch::NoGradGuard no_grad;
  const auto ws = gen.broadcast(gen.truncate(gen.mapping(gen.seed_z(1).unsqueeze(0)), 0.7));
  const auto plain = gen.synthesis(ws);
  const int64_t k = plain.size(3) / 8;
  gen.set_input_transform(0.125, 0.0, 0.0);
  const auto right = gen.synthesis(ws);
  const double moved = mean_diff(right, plain);
  EXPECT_GT(moved, 1e-5) << "the transform did nothing";  // float noise is about 1e-7
  const auto w = plain.size(3);
  EXPECT_LT(mean_diff(right.slice(3, k, w), plain.slice(3, 0, w - k)), 0.05 * moved);
  gen.set_input_transform(0.0, 0.125, 0.0);
  const auto down = gen.synthesis(ws);
  EXPECT_LT(mean_diff(down.slice(2, k, w), plain.slice(2, 0, w - k)), 0.05 * moved);
  if (GetParam() == "sg3r") {
    // R is equivariant to rotation too: a quarter turn is the plain picture turned (W → −H).
    gen.set_input_transform(0.0, 0.0, 90.0);
    const auto turned = gen.synthesis(ws);
    EXPECT_LT(mean_diff(turned, torch::rot90(plain, 1, {2, 3})), 0.05 * moved);
    EXPECT_GT(mean_diff(turned, torch::rot90(plain, -1, {2, 3})), 0.5 * moved);
  }
  // Zero restores the checkpoint's own view.
  gen.set_input_transform(0.0, 0.0, 0.0);
  EXPECT_TRUE(test::tensors_close(gen.synthesis(ws), plain, 1e-6));

  // Through the command line: the same picture, and the sidecar says how it was made.
  const auto r = styleclip({"generate", "--models", bundle(), "--seed", "1", "--translate",
                            "0.125,0", "--out", (tmp_ / "moved").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto png = read_image_rgb(tmp_ / "moved" / "seed0001.png").permute({2, 0, 1});
  const auto want = ((right[0].clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor();
  EXPECT_LE((png.to(torch::kFloat32) - want).abs().max().item<float>(), 1.0f);
  const auto side = json::parse(test::read_text(tmp_ / "moved" / "seed0001.json"));
  EXPECT_EQ(side["options"]["translate"], json({0.125, 0.0}));
  EXPECT_EQ(side["options"]["rotate"], 0.0);
}

INSTANTIATE_TEST_SUITE_P(Configs, StyleGAN3, ::testing::Values("sg3t", "sg3r"));

}  // namespace
}  // namespace styleclip
