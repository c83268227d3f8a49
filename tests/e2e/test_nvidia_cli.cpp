// End-to-end on bundles exported from NVIDIA network pickles (test bundles `nvidia`,
// `nvidia_cond`, and StyleGAN3's `sg3t`, `sg3r`): parity with NVIDIA's recorded outputs through
// the command line (generate --seed/--latent/--save-styles/--class), and every engine and the
// projector on such a bundle.
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

const int64_t kSeeds[] = {0, 1, 7, 123};

/// The recorded outputs of NVIDIA's code for the fixture pickle behind test bundle `bundle`.
std::string expected_for(const std::string& bundle) {
  if (bundle == "sg3t") return "stylegan-nvidia/sg3t_tiny32_expected.pt";
  if (bundle == "sg3r") return "stylegan-nvidia/sg3r_tiny32_expected.pt";
  return bundle == "nvidia" ? "stylegan-nvidia/ada_tiny64_expected.pt"
                            : "stylegan-nvidia/ada_cond32_expected.pt";
}

/// Whether the test bundle was exported from the reference pickle (not a stand-in one).
bool from_reference(const std::string& bundle) {
  const auto m = json::parse(test::read_text(test::testdata(bundle) / "manifest.json"));
  const auto src = m["generator"]["provenance"]["source"].get<std::string>();
  return src == "ada_tiny64.pkl" || src == "ada_cond32.pkl" || src == "sg3t_tiny32.pkl" ||
         src == "sg3r_tiny32.pkl";
}

/// The image the tool writes for a generator output: floor((clamp(x, -1, 1) + 1) / 2 · 255 + 0.5).
torch::Tensor quantise(const torch::Tensor& img) {
  return ((img.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor();
}

/// A written PNG matches NVIDIA's image: equal 8-bit values except where the expected value lies
/// within 1e-3 of a rounding boundary (there a difference of 1e-4 may round either way).
void expect_png_matches(const fs::path& png, const torch::Tensor& expected_chw) {
  const auto got = read_image_rgb(png).permute({2, 0, 1}).to(torch::kFloat32);
  const auto want = quantise(expected_chw);
  const auto scaled = (expected_chw.clamp(-1, 1) + 1) / 2 * 255 + 0.5;
  const auto frac = scaled - scaled.floor();
  const auto near_boundary = (frac < 1e-3 * 127.5) | (frac > 1 - 1e-3 * 127.5);
  const auto diff = (got - want).abs();
  EXPECT_LE(diff.max().item<float>(), 1.0f) << png;
  EXPECT_EQ(((diff > 0) & ~near_boundary).sum().item<int64_t>(), 0) << png;
}

class NvidiaParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE(GetParam());
    SKIP_UNLESS_FIXTURE(expected_for(GetParam()));
    if (!from_reference(GetParam()))
      GTEST_SKIP() << "bundle '" << GetParam() << "' was made from a stand-in pickle";
    expected_ = test::load_pt(test::fixtures_dir() / expected_for(GetParam()));
  }
  c10::IValue expected_;
  TempDir tmp_;
};

TEST_P(NvidiaParity, SeedsGiveNvidiasZ) {
  const Generator gen(Bundle::open(test::testdata(GetParam())), torch::kCPU);
  const auto z = test::dict_tensor(expected_, "z");
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(torch::equal(gen.seed_z(static_cast<uint64_t>(kSeeds[i])), z[i])) << kSeeds[i];
}

TEST_P(NvidiaParity, GenerateReproducesWStylesAndImages) {
  const auto dir = test::testdata(GetParam()).string();
  const auto c = test::dict_tensor(expected_, "c");
  const auto ws = test::dict_tensor(expected_, "ws_psi07");
  const auto img = test::dict_tensor(expected_, "img_psi07");
  const auto s_ref = expected_.toGenericDict().at("affine_outputs_psi07").toList();
  for (int i = 0; i < 4; ++i) {
    const auto out = tmp_ / ("seed" + std::to_string(i));
    std::vector<std::string> args = {"generate",
                                     "--models",
                                     dir,
                                     "--seed",
                                     std::to_string(kSeeds[i]),
                                     "--truncation",
                                     "0.7",
                                     "--save-styles",
                                     "--out",
                                     out.string(),
                                     "-q"};
    if (c.size(1) > 0) {
      args.push_back("--class");
      args.push_back(std::to_string(c[i].argmax().item<int64_t>()));
    }
    const auto r = styleclip(args);
    ASSERT_EQ(r.code, 0) << r.err;
    char stem[16];
    std::snprintf(stem, sizeof stem, "seed%04d", static_cast<int>(kSeeds[i]));
    const auto latent = read_tensor_file(out / (std::string(stem) + ".latent.pt"));
    EXPECT_TRUE(test::tensors_close(latent[0], ws[i], 1e-5)) << stem;
    const auto styles = test::load_pt(out / (std::string(stem) + ".styles.pt")).toList();
    ASSERT_EQ(styles.size(), s_ref.size());
    for (size_t l = 0; l < styles.size(); ++l) {
      const auto got = styles.get(l).toTensor().reshape({-1});
      const auto want = s_ref.get(l).toTensor()[i];
      EXPECT_TRUE(test::tensors_close(got, want, 1e-4)) << stem << " layer " << l;
    }
    expect_png_matches(out / (std::string(stem) + ".png"), img[i]);
  }
}

TEST_P(NvidiaParity, LatentInputReproducesEditedImages) {
  const auto ws = test::dict_tensor(expected_, "ws_edited");
  const auto img = test::dict_tensor(expected_, "img_edited");
  const auto latent = tmp_ / "edited.pt";
  save_tensor_pt(latent, ws);
  const auto out = tmp_ / "out";
  const auto r = styleclip({"generate", "--models", test::testdata(GetParam()).string(), "--latent",
                            latent.string(), "--out", out.string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<fs::path> pngs;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().extension() == ".png") pngs.push_back(e.path());
  std::sort(pngs.begin(), pngs.end());
  ASSERT_EQ(pngs.size(), 4u);
  for (int i = 0; i < 4; ++i) expect_png_matches(pngs[static_cast<size_t>(i)], img[i]);
}

INSTANTIATE_TEST_SUITE_P(Pickles, NvidiaParity,
                         ::testing::Values("nvidia", "nvidia_cond", "sg3t", "sg3r"));

/// Every engine and the projector on an NVIDIA bundle (the reference pickle or a stand-in).
class NvidiaEngines : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("nvidia");
    SKIP_UNLESS_BUNDLE("nvidia_cond");
  }
  TempDir tmp_;
};

TEST_F(NvidiaEngines, OptimizeMapperGlobalAndProjector) {
  const auto bundle = test::copy_testdata("nvidia", tmp_ / "bundle").string();
  // Engine 1: optimisation in W+ and in S.
  run_ok({"edit", "--models", bundle, "--text", "a red face", "--seed", "3", "--steps", "6"},
         tmp_ / "opt", {"seed0003.a-red-face.optimize.png", "seed0003.a-red-face.optimize.json"});
  run_ok({"edit", "--models", bundle, "--text", "a red face", "--seed", "3", "--steps", "6",
          "--space", "S"},
         tmp_ / "opt_s", {"seed0003.a-red-face.optimize.png"});
  // Engine 2: train a mapper on sampled latents, then apply it.
  const auto mapper = (tmp_ / "red.mapper.pt").string();
  auto r = styleclip({"mapper", "train", "--models", bundle, "--text", "a red face", "--sample",
                      "8", "--steps", "4", "--optimizer", "adam", "--out", mapper});
  ASSERT_EQ(r.code, 0) << r.err;
  run_ok({"edit", "--models", bundle, "--method", "mapper", "--mapper", mapper, "--seed", "0-1"},
         tmp_ / "map", {"seed0000.a-red-face.mapper.png", "seed0001.a-red-face.mapper.png"});
  // Engine 3: prepare global directions for two layers, then edit along one.
  r = styleclip({"global", "prepare", "--models", bundle, "--samples", "200", "--images", "2",
                 "--layers", "0,2", "--chunk", "16", "--batch", "16"});
  ASSERT_EQ(r.code, 0) << r.err;
  run_ok({"edit", "--models", bundle, "--method", "global", "--neutral", "a face", "--text",
          "a red face", "--seed", "2", "--threshold", "0"},
         tmp_ / "glob", {});
  bool wrote = false;
  for (const auto& e : fs::directory_iterator(tmp_ / "glob"))
    wrote |= e.path().extension() == ".png";
  EXPECT_TRUE(wrote);
  // The projector: invert an image the generator made.
  r = styleclip(
      {"generate", "--models", bundle, "--seed", "5", "--out", (tmp_ / "gen").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  run_ok({"invert", "--models", bundle, "--aligned", (tmp_ / "gen" / "seed0005.png").string(),
          "--with", "optimize", "--steps", "30"},
         tmp_ / "inv", {"seed0005.latent.pt", "seed0005.invert.json"});
  const auto side = json::parse(test::read_text(tmp_ / "inv" / "seed0005.invert.json"));
  EXPECT_GT(side["metrics"]["psnr"].get<double>(), side["metrics"]["psnr_start"].get<double>());
}

TEST_F(NvidiaEngines, ConditionalBundleEditsWithAClass) {
  const auto bundle = test::testdata("nvidia_cond").string();
  const auto c_dim = Bundle::open(bundle).generator().c_dim;
  ASSERT_GT(c_dim, 1);
  run_ok({"edit", "--models", bundle, "--text", "a red face", "--seed", "1", "--steps", "4",
          "--class", "1"},
         tmp_ / "opt", {"seed0001.a-red-face.optimize.json"});
  const auto side =
      json::parse(test::read_text(tmp_ / "opt" / "seed0001.a-red-face.optimize.json"));
  EXPECT_NE(side.dump().find("\"class\":1"), std::string::npos) << side.dump();
  // Different classes give different images for the same seed.
  for (const char* k : {"0", "1"})
    run_ok({"generate", "--models", bundle, "--seed", "4", "--class", k, "-q"},
           tmp_ / (std::string("c") + k), {"seed0004.png"});
  EXPECT_FALSE(torch::equal(read_image_rgb(tmp_ / "c0" / "seed0004.png"),
                            read_image_rgb(tmp_ / "c1" / "seed0004.png")));
}

}  // namespace
}  // namespace styleclip
