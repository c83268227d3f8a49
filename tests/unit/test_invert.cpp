// Inversion by optimisation on the tiny random bundle: the projector lowers its loss
// and raises PSNR toward an image the generator can make, pixel-only and with the CLIP term.
#include <styleclip/engines/invert.h>
#include <styleclip/error.h>

#include "test_support.h"

namespace styleclip {
namespace {

using InvertTiny = test::TinyModelsTest;

TEST_F(InvertTiny, ProjectorLowersItsLossAndRaisesPsnr) {
  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    target = gen_->synthesis(sampled_wplus({11, 12}));
  }
  for (const double clip_lambda : {0.0, 0.5}) {
    InvertOptions o;
    o.steps = 80;
    o.clip_lambda = clip_lambda;
    std::vector<double> losses;
    const auto res = invert(*gen_, clip_lambda > 0 ? clip_.get() : nullptr, target, torch::Tensor(),
                            o, [&](int, int, double l) { losses.push_back(l); });
    ASSERT_EQ(losses.size(), 80u);
    EXPECT_LT(losses.back(), 0.5 * losses.front()) << clip_lambda;
    ASSERT_EQ(res.ws.sizes(), (std::vector<int64_t>{2, gen_->info().num_ws, gen_->info().w_dim}));
    EXPECT_EQ(res.ws.scalar_type(), torch::kFloat32);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_GT(res.psnr_after[i], res.psnr_before[i] + 3.0) << clip_lambda << " row " << i;
    }
    // The reported image is what the latent renders.
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(test::tensors_close(gen_->synthesis(res.ws), res.images, 1e-5));
  }
}

TEST_F(InvertTiny, StartingAtTheAnswerStaysThere) {
  const auto w = sampled_wplus({5});
  // Rendered as the projector renders (with a gradient: the generator's input-scaling form).
  // Rosinality's form, used without a gradient, gives the same image to 1e-6, but at the exact
  // optimum the gradient is then that rounding, and Adam, which divides by its size, turns it
  // into lr-sized steps (PSNR 17 after 10 steps): that would test Adam's normalisation, not
  // whether the projector knows it has arrived.
  const auto target = gen_->synthesis(w.clone().requires_grad_(true)).detach();
  InvertOptions o;
  o.steps = 10;
  o.clip_lambda = 0;
  const auto res = invert(*gen_, nullptr, target, w, o);
  EXPECT_GT(res.psnr_before[0], 60.0);  // exact start
  EXPECT_GT(res.psnr_after[0], 40.0);
}

TEST_F(InvertTiny, BadOptionsAndShapesAreClearErrors) {
  const auto r = gen_->info().resolution;
  InvertOptions o;
  o.steps = 0;
  EXPECT_THROW((void)invert(*gen_, clip_.get(), torch::zeros({1, 3, r, r}), {}, o), Error);
  o = InvertOptions{};
  o.pixel_lambda = 0;
  o.clip_lambda = 0;  // and no LPIPS model: nothing pulls toward the target
  try {
    (void)invert(*gen_, clip_.get(), torch::zeros({1, 3, r, r}), {}, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("nothing to match"), std::string::npos) << e.what();
  }
  o.lpips_lambda = 0;
  EXPECT_THROW(validate(o), Error);
  o = InvertOptions{};
  EXPECT_THROW((void)invert(*gen_, nullptr, torch::zeros({1, 3, r, r}), {}, o), Error);  // no CLIP
  try {
    (void)invert(*gen_, clip_.get(), torch::zeros({1, 3, r + 1, r}), {}, InvertOptions{});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
  }
}

}  // namespace
}  // namespace styleclip
