// CLIP parity with OpenAI's model (fixtures/clip-openai): our tokenizer, exporter and C++
// wrapper reproduce the reference's tokens and embeddings.
#include <styleclip/error.h>
#include <styleclip/models/clip.h>

#include <fstream>

#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using test::tensors_close;

constexpr double kModelTol = 1e-4;  // fp32 model-only agreement (fixture README)

class ClipParity : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_FIXTURE("clip-openai/tiny_expected.pt");
    SKIP_UNLESS_BUNDLE("clip_jit");
    expected_ = test::load_pt(test::fixtures_dir() / "clip-openai/tiny_expected.pt");
    config_ =
        nlohmann::json::parse(test::read_text(test::fixtures_dir() / "clip-openai/tiny.json"));
  }
  torch::Tensor ex(const std::string& key) { return test::dict_tensor(expected_, key); }
  std::vector<std::string> texts() { return config_["texts"].get<std::vector<std::string>>(); }
  c10::IValue expected_;
  nlohmann::json config_;
  torch::NoGradGuard no_grad_;
};

TEST_F(ClipParity, OurTokensAreTheReferenceTokens) {
  const Clip clip(Bundle::open(test::testdata("clip_jit")), torch::kCPU);
  EXPECT_TRUE(torch::equal(clip.tokenize(texts()), ex("tokens").to(torch::kInt64)));
}

TEST_F(ClipParity, TorchScriptExportReproducesEmbeddings) {
  const Clip clip(Bundle::open(test::testdata("clip_jit")), torch::kCPU);
  EXPECT_TRUE(tensors_close(clip.encode_text(texts()), ex("text_embeddings"), kModelTol));
  EXPECT_TRUE(
      tensors_close(clip.encode_pixels(ex("raw_pixels")), ex("raw_image_embeddings"), kModelTol));
  EXPECT_TRUE(tensors_close(clip.encode_pixels(ex("pixels")), ex("image_embeddings"), kModelTol));
  EXPECT_NEAR(clip.logit_scale(), std::exp(ex("logit_scale").item<double>()), 1e-3);
}

// The fp16 state dict holds the archive's weights rounded to fp16, while the expected values were
// computed from the unrounded weights (see the exporter's test): agreement is to fp16 rounding.
TEST_F(ClipParity, Fp16StateDictExportAgreesToHalfPrecision) {
  SKIP_UNLESS_BUNDLE("clip_sd");
  const Clip clip(Bundle::open(test::testdata("clip_sd")), torch::kCPU);
  EXPECT_TRUE(tensors_close(clip.encode_text(texts()), ex("text_embeddings"), 2e-3));
  EXPECT_TRUE(
      tensors_close(clip.encode_pixels(ex("raw_pixels")), ex("raw_image_embeddings"), 2e-3));
}

TEST_F(ClipParity, EncodeImageAcceptsAnySizeAndIsDifferentiable) {
  torch::AutoGradMode grad(true);
  const Clip clip(Bundle::open(test::testdata("clip_jit")), torch::kCPU);
  auto x = (torch::rand({2, 3, 50, 70}) * 2 - 1).requires_grad_(true);
  const auto e = clip.encode_image(x);
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{2, 32}));
  e.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
}

TEST(Clip, OverlongPromptIsCutKeepingTheEndToken) {
  SKIP_UNLESS_BUNDLE("clip_jit");
  const Clip clip(Bundle::open(test::testdata("clip_jit")), torch::kCPU);
  std::string text;
  for (int i = 0; i < 100; ++i) text += "word ";
  const auto t = clip.tokenize({text});
  EXPECT_EQ(t.size(1), 77);
  EXPECT_EQ(t[0][76].item<int64_t>(), clip.tokenizer().end_token());
}

TEST(Clip, FileOfTheWrongKind) {
  SKIP_UNLESS_BUNDLE("clip_jit");
  SKIP_UNLESS_BUNDLE("tiny");
  test::TempDir tmp;
  const auto dir = test::bundle_with_replaced(test::testdata("clip_jit"), "clip",
                                              test::testdata("tiny") / "generator.pt", tmp / "b");
  try {
    (void)Clip(Bundle::open(dir), torch::kCPU);
    FAIL() << "loaded a generator as CLIP";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(std::string(e.what()).find(
                  "is not a styleclip CLIP model: it has no method 'encode_image'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace styleclip
