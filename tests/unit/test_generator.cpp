// Generator parity with rosinality's StyleGAN2 (fixtures/stylegan2-rosinality) through the C++
// API, and loading of generators of other sizes and of files of the wrong kind.
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/generator.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using test::tensors_close;

constexpr double kParityTol = 1e-4;  // fp32 agreement the fixture README promises

class Tiny64Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_FIXTURE("stylegan2-rosinality/tiny64_expected.pt");
    SKIP_UNLESS_BUNDLE("tiny64");
    expected_ = test::load_pt(test::fixtures_dir() / "stylegan2-rosinality/tiny64_expected.pt");
    gen_ = std::make_unique<Generator>(Bundle::open(test::testdata("tiny64")), torch::kCPU);
  }
  torch::Tensor ex(const std::string& key) { return test::dict_tensor(expected_, key); }
  c10::IValue expected_;
  std::unique_ptr<Generator> gen_;
  torch::NoGradGuard no_grad_;
};

TEST_F(Tiny64Parity, MappingAndAverage) {
  EXPECT_TRUE(tensors_close(gen_->mapping(ex("z")), ex("w"), kParityTol));
  EXPECT_TRUE(tensors_close(gen_->w_avg(), ex("latent_avg"), kParityTol));
}

TEST_F(Tiny64Parity, ImagesFromZWithAndWithoutTruncation) {
  const auto w = gen_->mapping(ex("z"));
  EXPECT_TRUE(tensors_close(gen_->synthesis(gen_->broadcast(w)), ex("image_z"), kParityTol));
  const auto wt = gen_->truncate(w, 0.7);
  EXPECT_TRUE(
      tensors_close(gen_->synthesis(gen_->broadcast(wt)), ex("image_z_trunc07"), kParityTol));
}

TEST_F(Tiny64Parity, ImageFromWPlus) {
  EXPECT_TRUE(tensors_close(gen_->synthesis(ex("ws")), ex("image_ws"), kParityTol));
}

TEST_F(Tiny64Parity, AllStyleTensors) {
  const auto s = gen_->styles(ex("ws"));
  ASSERT_EQ(s.size(), 14u);
  for (size_t i = 0; i < s.size(); ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "style_%02zu", i);
    EXPECT_TRUE(tensors_close(s[i], ex(key), kParityTol)) << key;
  }
}

TEST_F(Tiny64Parity, SynthesisFromEditedStyles) {
  std::vector<torch::Tensor> edited;
  for (const auto& v : expected_.toGenericDict().at("styles_edited").toListRef()) {
    edited.push_back(v.toTensor());
  }
  EXPECT_TRUE(
      tensors_close(gen_->synthesis_from_styles(edited), ex("image_styles_edited"), kParityTol));
  // And the edit itself, made here from our own S: channel 5 of S[2] +3, channel 1 of S[0] −2.
  auto s = gen_->styles(ex("ws"));
  s[2] = s[2].clone();
  s[2].select(1, 5).add_(3.0);
  s[0] = s[0].clone();
  s[0].select(1, 1).sub_(2.0);
  EXPECT_TRUE(tensors_close(gen_->synthesis_from_styles(s), ex("image_styles_edited"), kParityTol));
}

TEST_F(Tiny64Parity, BatchSizeIsFree) {
  const auto ws = ex("ws");
  const auto all = gen_->synthesis(ws);
  for (int64_t i = 0; i < ws.size(0); ++i) {
    EXPECT_TRUE(
        tensors_close(gen_->synthesis(ws.slice(0, i, i + 1)), all.slice(0, i, i + 1), 1e-5));
  }
}

TEST(Generator, OtherSizeAndLayoutLoads) {
  SKIP_UNLESS_BUNDLE("other");
  const Generator g(Bundle::open(test::testdata("other")), torch::kCPU);
  EXPECT_EQ(g.info().resolution, 16);
  EXPECT_EQ(g.info().w_dim, 24);
  EXPECT_EQ(g.info().num_ws, 6);
  torch::NoGradGuard no_grad;
  const auto img = g.synthesis(g.broadcast(g.mapping(torch::randn({3, 24}))));
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_TRUE(torch::isfinite(img).all().item<bool>());
}

TEST(Generator, RandomNoiseChangesTheImageFixedNoiseDoesNot) {
  SKIP_UNLESS_BUNDLE("tiny");
  const Generator g(Bundle::open(test::testdata("tiny")), torch::kCPU);
  torch::NoGradGuard no_grad;
  const auto ws = g.broadcast(g.mapping(g.seed_z(0).unsqueeze(0)));
  EXPECT_TRUE(tensors_close(g.synthesis(ws), g.synthesis(ws), 0.0));
  EXPECT_GT((g.synthesis(ws, true) - g.synthesis(ws)).abs().max().item<double>(), 1e-4);
}

TEST(Generator, SeedMatchesPythonTorchRandn) {
  SKIP_UNLESS_BUNDLE("tiny");
  const Generator g(Bundle::open(test::testdata("tiny")), torch::kCPU);
  test::TempDir tmp;
  const auto out = tmp / "z.pt";
  const auto r = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import sys, torch; torch.manual_seed(42); torch.save(torch.randn(32), sys.argv[1])",
       out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(tensors_close(g.seed_z(42), read_tensor_file(out), 0.0));
}

/// A bundle exported from one of NVIDIA's StyleGAN2-ADA pickles, as a user makes it.
class NvidiaBundle : public ::testing::Test {
 protected:
  void open(const std::string& name) {
    const std::string pkl = "stylegan-nvidia/" + name + ".pkl";
    if (!test::have_fixture(pkl)) {
      GTEST_SKIP() << "fixture '" << pkl << "' not found under " << test::fixtures_dir();
    }
    const auto r = test::export_stylegan_fixture(pkl, tmp_ / name);
    ASSERT_EQ(r.code, 0) << r.err;
    expected_ = test::load_pt(test::fixtures_dir() / ("stylegan-nvidia/" + name + "_expected.pt"));
    gen_ = std::make_unique<Generator>(Bundle::open(tmp_ / name), torch::kCPU);
  }
  torch::Tensor ex(const std::string& key) { return test::dict_tensor(expected_, key); }
  test::TempDir tmp_;
  c10::IValue expected_;
  std::unique_ptr<Generator> gen_;
  torch::NoGradGuard no_grad_;
};

// The fixture's seeds; its conditional rows use class seed % c_dim.
const std::vector<uint64_t> kNvidiaSeeds = {0, 1, 7, 123};

TEST_F(NvidiaBundle, ConditionalSeedsLabelsAndMappingMatchNvidia) {
  open("ada_cond32");
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(gen_->info().c_dim, 5);
  ASSERT_EQ(gen_->info().seed_convention, SeedConvention::kNumpyRandomState);
  EXPECT_TRUE(gen_->conditional());
  for (size_t i = 0; i < kNvidiaSeeds.size(); ++i) {
    const auto seed = kNvidiaSeeds[i];
    const auto row = static_cast<int64_t>(i);
    const auto z = gen_->seed_z(seed).unsqueeze(0);
    EXPECT_TRUE(tensors_close(z, ex("z").slice(0, row, row + 1), 0.0)) << "seed " << seed;
    const auto c = gen_->class_label(static_cast<int64_t>(seed % 5), 1);
    EXPECT_TRUE(tensors_close(c, ex("c").slice(0, row, row + 1), 0.0)) << "seed " << seed;
    const auto w = gen_->mapping(z, c);
    EXPECT_TRUE(tensors_close(w, ex("ws_psi1").select(1, 0).slice(0, row, row + 1), 1e-5))
        << "seed " << seed;
    EXPECT_TRUE(tensors_close(gen_->truncate(w, 0.7),
                              ex("ws_psi07").select(1, 0).slice(0, row, row + 1), 1e-5))
        << "seed " << seed;
  }
  // Another class gives another w: the label reaches the mapping.
  const auto z = gen_->seed_z(0).unsqueeze(0);
  EXPECT_GT((gen_->mapping(z, gen_->class_label(1, 1)) - gen_->mapping(z, gen_->class_label(0, 1)))
                .abs()
                .max()
                .item<double>(),
            1e-3);
  // A batch of labels: one row per z.
  EXPECT_EQ(gen_->class_label(4, 3).sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(gen_->class_label(4, 3).sum(1).eq(1).all().item<bool>(), true);
}

TEST_F(NvidiaBundle, UnconditionalSeedsAndMappingMatchNvidia) {
  open("ada_tiny64");
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(gen_->info().c_dim, 0);
  EXPECT_FALSE(gen_->conditional());
  EXPECT_FALSE(gen_->class_label(std::nullopt, 1).defined());
  std::vector<torch::Tensor> zs;
  for (const auto seed : kNvidiaSeeds) zs.push_back(gen_->seed_z(seed));
  const auto z = torch::stack(zs);
  EXPECT_TRUE(tensors_close(z, ex("z"), 0.0));
  EXPECT_TRUE(tensors_close(gen_->mapping(z), ex("ws_psi1").select(1, 0), 1e-5));
}

TEST_F(NvidiaBundle, LabelAndSeedErrors) {
  open("ada_cond32");
  if (HasFatalFailure() || IsSkipped()) return;
  const auto z = gen_->seed_z(0).unsqueeze(0);
  const auto expect_input_error = [](const auto& f, const std::string& words) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one with '" << words << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kInputUnusable) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_input_error([&] { (void)gen_->mapping(z); }, "needs a class label of shape [1, 5]");
  expect_input_error([&] { (void)gen_->mapping(z, gen_->class_label(0, 2)); },
                     "needs a class label of shape [1, 5], got [2, 5]");
  expect_input_error([&] { (void)gen_->class_label(5, 1); }, "5 classes (0-4)");
  expect_input_error([&] { (void)gen_->class_label(-1, 1); }, "5 classes (0-4)");
  expect_input_error([&] { (void)gen_->seed_z(4294967296ULL); }, "seeds are 0-4294967295");
  EXPECT_EQ(gen_->seed_z(4294967295ULL).size(0), 32);
}

TEST(Generator, UnconditionalTakesNoLabel) {
  SKIP_UNLESS_BUNDLE("tiny");
  const Generator g(Bundle::open(test::testdata("tiny")), torch::kCPU);
  EXPECT_EQ(g.info().c_dim, 0);
  EXPECT_EQ(g.info().seed_convention, SeedConvention::kTorch);
  try {
    (void)g.class_label(0, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    EXPECT_NE(std::string(e.what()).find("unconditional"), std::string::npos) << e.what();
  }
  torch::NoGradGuard no_grad;
  try {
    (void)g.mapping(torch::zeros({1, 32}), torch::zeros({1, 3}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    EXPECT_NE(std::string(e.what()).find("takes no class label"), std::string::npos) << e.what();
  }
}

TEST(Generator, ConditionalWithoutMappingConditionalIsABundleError) {
  // The demonstration generator was exported before `mapping_conditional` existed.
  SKIP_UNLESS_BUNDLE("tiny");
  const fs::path old_generator = fs::path(STYLECLIP_SOURCE_DIR) / "models/demo/generator.pt";
  if (!fs::exists(old_generator)) GTEST_SKIP() << "models/demo is absent";
  test::TempDir tmp;
  const auto dir =
      test::bundle_with_replaced(test::testdata("tiny"), "generator", old_generator, tmp / "b");
  auto m = nlohmann::json::parse(test::read_text(dir / "manifest.json"));
  m["generator"]["c_dim"] = 3;
  test::write_text(dir / "manifest.json", m.dump(2));
  try {
    (void)Generator(Bundle::open(dir), torch::kCPU);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("has no method 'mapping_conditional', which a conditional generator "
                       "(c_dim 3 in manifest.json) needs"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Generator, WrongShapesAreInputErrors) {
  SKIP_UNLESS_BUNDLE("tiny");
  const Generator g(Bundle::open(test::testdata("tiny")), torch::kCPU);
  torch::NoGradGuard no_grad;
  try {
    (void)g.synthesis(torch::zeros({1, 7, 32}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    EXPECT_NE(std::string(e.what()).find("expected [N, 8, 32]"), std::string::npos) << e.what();
  }
}

TEST(Generator, FileOfTheWrongKind) {
  SKIP_UNLESS_BUNDLE("tiny");
  test::TempDir tmp;
  const auto dir = test::bundle_with_replaced(test::testdata("tiny"), "generator",
                                              test::testdata("tiny") / "clip.pt", tmp / "b");
  try {
    (void)Generator(Bundle::open(dir), torch::kCPU);
    FAIL() << "loaded a CLIP model as a generator";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(
        std::string(e.what()).find("is not a styleclip generator: it has no method 'mapping'"),
        std::string::npos)
        << e.what();
  }
}

TEST(Generator, FileThatIsNotTorchScript) {
  SKIP_UNLESS_BUNDLE("tiny");
  test::TempDir tmp;
  test::write_text(tmp / "junk", std::string(4096, 'x'));
  const auto dir =
      test::bundle_with_replaced(test::testdata("tiny"), "generator", tmp / "junk", tmp / "b");
  try {
    (void)Generator(Bundle::open(dir), torch::kCPU);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(std::string(e.what()).find("not a TorchScript archive"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace styleclip
