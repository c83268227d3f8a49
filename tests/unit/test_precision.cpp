// --precision: parsing, and on the CPU that bf16 autocast really changes the models'
// arithmetic while the losses stay within a stated tolerance of fp32, the latents and optimiser
// state stay fp32, and the previous autocast state comes back when a scope ends.
#include <styleclip/engines/mapper.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/losses/losses.h>
#include <styleclip/runtime.h>

#include "test_support.h"

namespace styleclip {
namespace {

// bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 % per value). Through the tiny
// generator and CLIP towers the cosine similarity can move by a few such steps; 0.02 is ten
// times bf16's unit roundoff on a quantity in [-1, 1], written before measuring.
constexpr double kBf16LossTolerance = 0.02;

TEST(Precision, ParsesNamesAndPicksTheDefaultByDevice) {
  EXPECT_EQ(parse_precision("auto", torch::kCPU), Precision::kFp32);
  EXPECT_EQ(parse_precision("auto", torch::Device(torch::kCUDA, 0)), Precision::kBf16);
  EXPECT_EQ(parse_precision("fp32", torch::kCPU), Precision::kFp32);
  EXPECT_EQ(parse_precision("tf32", torch::kCPU), Precision::kTf32);
  EXPECT_EQ(parse_precision("bf16", torch::kCPU), Precision::kBf16);
  EXPECT_EQ(parse_precision("fp16", torch::Device(torch::kCUDA, 0)), Precision::kFp16);
  for (const auto p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16}) {
    EXPECT_EQ(parse_precision(to_string(p), torch::Device(torch::kCUDA, 0)), p);
  }
  try {
    (void)parse_precision("fp16", torch::kCPU);
    FAIL() << "fp16 on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("--precision fp16 needs a CUDA device"), std::string::npos)
        << e.what();
  }
  try {
    (void)parse_precision("half", torch::kCPU);
    FAIL() << "'half' was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
    EXPECT_EQ(std::string(e.what()),
              "invalid --precision 'half': expected auto, fp32, tf32, bf16 or fp16");
  }
}

TEST(Precision, ScopeRestoresTheAutocastState) {
  // Read through a matrix product's dtype, which works with every LibTorch version's API.
  const auto a = torch::randn({4, 4});
  const auto mm_type = [&] { return torch::mm(a, a).scalar_type(); };
  ASSERT_EQ(mm_type(), torch::kFloat32);
  {
    const PrecisionScope outer(Precision::kBf16, torch::kCPU);
    EXPECT_EQ(mm_type(), torch::kBFloat16);
    {
      const PrecisionScope inner(Precision::kFp32, torch::kCPU);  // fp32 leaves autocast alone
      EXPECT_EQ(mm_type(), torch::kBFloat16);
    }
    EXPECT_EQ(mm_type(), torch::kBFloat16);
  }
  EXPECT_EQ(mm_type(), torch::kFloat32);
}

using PrecisionTiny = test::TinyModelsTest;

TEST_F(PrecisionTiny, Bf16LossIsCloseToFp32ButNotEqual) {
  const auto ws = sampled_wplus({0, 1, 2});
  const auto t = text("a red car");
  const ClipLoss loss(*clip_, gen_->info().resolution, ClipInput::kRaw);
  torch::NoGradGuard no_grad;
  const auto ref = loss(gen_->synthesis(ws), t);
  torch::Tensor img, low;
  {
    const PrecisionScope scope(Precision::kBf16, torch::kCPU);
    img = gen_->synthesis(ws);
    low = loss(img, t);
  }
  // The models' outputs come back as fp32, so everything downstream is fp32.
  EXPECT_EQ(img.scalar_type(), torch::kFloat32);
  EXPECT_EQ(low.scalar_type(), torch::kFloat32);
  const double diff = (low - ref).abs().max().item<double>();
  EXPECT_GT(diff, 0.0) << "bf16 gave bit-identical losses: autocast did not reach the models";
  EXPECT_LT(diff, kBf16LossTolerance);
  // tf32 is fp32 on the CPU, bit for bit.
  {
    const PrecisionScope scope(Precision::kTf32, torch::kCPU);
    EXPECT_TRUE(test::tensors_close(loss(gen_->synthesis(ws), t), ref, 0.0));
  }
  // After the scopes, fp32 again, bit for bit.
  EXPECT_TRUE(test::tensors_close(loss(gen_->synthesis(ws), t), ref, 0.0));
}

TEST_F(PrecisionTiny, OptimizeInBf16KeepsFp32LatentsAndTracksFp32) {
  const auto ws = sampled_wplus({4, 5});
  const auto t = text("purple hair");
  OptimizeOptions o;
  o.steps = 20;
  const auto ref = optimize(*gen_, *clip_, nullptr, ws, t, o);
  o.precision = Precision::kBf16;
  std::vector<double> losses;
  OptimizeCallbacks cb;
  cb.progress = [&](int, int, double l) { losses.push_back(l); };
  const auto low = optimize(*gen_, *clip_, nullptr, ws, t, o, cb);
  EXPECT_EQ(low.ws.scalar_type(), torch::kFloat32);
  EXPECT_EQ(low.images_after.scalar_type(), torch::kFloat32);
  ASSERT_EQ(losses.size(), 20u);
  EXPECT_LT(losses.back(), losses.front());
  for (size_t i = 0; i < ref.rows.size(); ++i) {
    EXPECT_TRUE(low.rows[i].ok);
    EXPECT_NEAR(low.rows[i].clip_before, ref.rows[i].clip_before, kBf16LossTolerance);
    EXPECT_NEAR(low.rows[i].clip_after, ref.rows[i].clip_after, kBf16LossTolerance);
    EXPECT_GT(low.rows[i].clip_after, low.rows[i].clip_before);
  }
  EXPECT_TRUE(low.ws.ne(ref.ws).any().item<bool>()) << "bf16 took the fp32 path";
}

TEST_F(PrecisionTiny, MapperStepInBf16KeepsFp32WeightsAndTracksFp32) {
  const auto w = sampled_wplus({6, 7});
  const auto t = text("a red car");
  const ClipLoss loss(*clip_, gen_->info().resolution, ClipInput::kRaw);
  MapperTrainOptions o;
  o.id_lambda = 0;
  LevelsMapperOptions mo;
  mo.num_ws = gen_->info().num_ws;
  mo.w_dim = gen_->info().w_dim;
  std::vector<MapperStepLosses> out;
  for (const auto p : {Precision::kFp32, Precision::kBf16}) {
    LevelsMapper mapper(mo);  // same seed: same initial weights
    auto opt = make_mapper_optimizer(mapper, o);
    o.precision = p;
    out.push_back(mapper_train_step(mapper, *opt, *gen_, loss, nullptr, t, w, o));
    for (const auto& param : mapper->parameters()) EXPECT_EQ(param.scalar_type(), torch::kFloat32);
  }
  EXPECT_NEAR(out[1].clip, out[0].clip, kBf16LossTolerance);
  EXPECT_NEAR(out[1].l2, out[0].l2, 1e-3 * std::max(1.0, out[0].l2));
  EXPECT_NE(out[1].clip, out[0].clip) << "bf16 took the fp32 path";
}

}  // namespace
}  // namespace styleclip
