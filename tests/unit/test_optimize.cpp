// Engine 1 (latent optimisation) on the tiny random bundle: behaviour that must hold with any
// weights — the loss falls, CLIP similarity rises, λ_L2 holds the latent, batches equal single
// runs, NaN rows stop alone — and the reference's learning-rate schedule.
#include <styleclip/engines/device_adam.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/losses/losses.h>

#include <cmath>

#include <torch/optim/adam.h>

#include "test_support.h"

namespace styleclip {
namespace {

TEST(OptimizeSchedule, MatchesGetLr) {
  // run_optimization.py get_lr with rampdown 0.25, rampup 0.05, at the steps the reference schedule
  // turns at.
  const auto ref = [](double t) {
    double ramp = std::min(1.0, (1.0 - t) / 0.25);
    ramp = 0.5 - 0.5 * std::cos(ramp * M_PI);
    return 0.1 * ramp * std::min(1.0, t / 0.05);
  };
  for (const int step : {0, 15, 150, 225, 299}) {
    EXPECT_NEAR(optimize_lr(step, 300, 0.1), ref(step / 300.0), 1e-15) << step;
  }
  EXPECT_EQ(optimize_lr(0, 300, 0.1), 0.0);             // Adam's first step moves nothing
  EXPECT_NEAR(optimize_lr(15, 300, 0.1), 0.1, 1e-15);   // warm-up done at 5 %
  EXPECT_NEAR(optimize_lr(225, 300, 0.1), 0.1, 1e-15);  // ramp-down starts at 75 %
  EXPECT_NEAR(optimize_lr(299, 300, 0.1), 4.386e-5, 1e-8);
}

// DeviceAdam (the capturable form the engine uses) against LibTorch's Adam: the same parameters,
// gradients and learning-rate schedule (lr 0 first, then changing every step) for 60 steps.
TEST(DeviceAdamTest, EqualsLibTorchAdam) {
  torch::manual_seed(3);
  const auto target = torch::randn({4, 5});
  auto a = torch::randn({4, 5}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  DeviceAdam mine({a});
  torch::optim::Adam ref({b}, torch::optim::AdamOptions(0.1).betas({0.9, 0.999}).eps(1e-8));
  auto& ref_lr = static_cast<torch::optim::AdamOptions&>(ref.param_groups()[0].options());
  for (int step = 0; step < 60; ++step) {
    const double lr = optimize_lr(step, 60, 0.1);
    mine.set_lr(lr);
    ref_lr.lr(lr);
    mine.zero_grad();
    ref.zero_grad();
    // A loss whose gradient changes sign and size, so both moments matter.
    (a - target).pow(4).sum().backward();
    (b - target).pow(4).sum().backward();
    mine.step();
    ref.step();
    ASSERT_TRUE(test::tensors_close(a, b, 1e-5)) << "step " << step;
  }
  EXPECT_GT((a - target).abs().max().item<double>(), 0.0);
  EXPECT_LT((a - target).abs().max().item<double>(), 0.5);  // and it did optimise
}

TEST(DeviceAdamTest, NoParametersIsAnError) { EXPECT_THROW(DeviceAdam({}), std::invalid_argument); }

class OptimizeTiny : public test::TinyModelsTest {
 protected:
  static OptimizeOptions quick() {
    OptimizeOptions o;
    o.steps = 40;
    return o;
  }
};

TEST_F(OptimizeTiny, LossFallsAndSimilarityRisesForPromptsAndSeeds) {
  for (const std::string prompt : {"a smiling face", "a red car", "purple hair"}) {
    std::vector<double> losses;
    OptimizeCallbacks cb;
    cb.progress = [&](int, int, double loss) { losses.push_back(loss); };
    auto o = quick();
    o.id_lambda = 0.005;
    const auto res =
        optimize(*gen_, *clip_, id_.get(), sampled_wplus({0, 1, 2}), text(prompt), o, cb);
    ASSERT_EQ(losses.size(), 40u);
    EXPECT_LT(losses.back(), losses.front()) << prompt;
    for (const auto& row : res.rows) {
      EXPECT_TRUE(row.ok);
      EXPECT_GT(row.clip_after, row.clip_before) << prompt;
      ASSERT_TRUE(row.identity.has_value());
      EXPECT_LE(*row.identity, 1.0 + 1e-5);
    }
  }
}

TEST_F(OptimizeTiny, HugeL2KeepsTheLatentNearTheStart) {
  const auto w0 = sampled_wplus({3});
  auto o = quick();
  const auto free_run = optimize(*gen_, *clip_, nullptr, w0, text("a smiling face"), o);
  o.l2_lambda = 1e4;
  const auto held = optimize(*gen_, *clip_, nullptr, w0, text("a smiling face"), o);
  const double moved_free = (free_run.ws - w0).abs().max().item<double>();
  const double moved_held = (held.ws - w0).abs().max().item<double>();
  EXPECT_LT(moved_held, 0.01);
  EXPECT_LT(moved_held, moved_free / 10.0);
}

// Rows are independent: each has its own loss and Adam is element-wise. The batched generator
// (grouped convolution over the batch) rounds differently from a batch of one by ~1e-6, and
// Adam's normalised steps amplify rounding where a gradient is near zero, so agreement is exact
// to rounding over a few steps and close (not bitwise) over many.
TEST_F(OptimizeTiny, BatchEqualsOneAtATime) {
  const auto w0 = sampled_wplus({4, 5, 6});
  const auto t = text("a blue sky");
  for (const int steps : {3, 20}) {
    auto o = quick();
    o.steps = steps;
    o.id_lambda = 0.005;
    const auto batch = optimize(*gen_, *clip_, id_.get(), w0, t, o);
    for (int64_t i = 0; i < 3; ++i) {
      const auto one = optimize(*gen_, *clip_, id_.get(), w0.slice(0, i, i + 1), t, o);
      EXPECT_TRUE(test::tensors_close(batch.ws[i], one.ws[0], steps == 3 ? 1e-5 : 5e-3))
          << i << " @" << steps;
      EXPECT_NEAR(batch.rows[static_cast<size_t>(i)].clip_after, one.rows[0].clip_after,
                  steps == 3 ? 1e-5 : 1e-3);
    }
  }
}

TEST_F(OptimizeTiny, DeterministicOnCpu) {
  const auto w0 = sampled_wplus({7});
  const auto a = optimize(*gen_, *clip_, id_.get(), w0, text("an old man"), quick());
  const auto b = optimize(*gen_, *clip_, id_.get(), w0, text("an old man"), quick());
  EXPECT_TRUE(torch::equal(a.ws, b.ws));
  EXPECT_TRUE(torch::equal(a.images_after, b.images_after));
}

// The engine against the reference procedure written plainly here (run_optimization.py: Adam on
// W+, get_lr, 1 − cos + λ_L2·Σ(w − w₀)²) with LibTorch's own Adam, on two rows at once.
TEST_F(OptimizeTiny, EqualsThePlainReferenceLoop) {
  const auto w0 = sampled_wplus({4, 5});
  const auto t = text("a smiling face");
  // 10 steps: Adam divides by √v, so a gradient component near zero is followed by its sign,
  // and float rounding (1e-6 here) grows to 1e-3 by step 20 whatever the implementation.
  auto o = quick();
  o.steps = 10;
  const auto res = optimize(*gen_, *clip_, nullptr, w0, t, o);

  const ClipLoss clip_loss(*clip_, gen_->info().resolution, o.clip_input);
  auto w = w0.clone().requires_grad_(true);
  torch::optim::Adam adam({w}, torch::optim::AdamOptions(o.lr).betas({0.9, 0.999}).eps(1e-8));
  auto& lr = static_cast<torch::optim::AdamOptions&>(adam.param_groups()[0].options());
  for (int step = 0; step < o.steps; ++step) {
    lr.lr(optimize_lr(step, o.steps, o.lr));
    adam.zero_grad();
    const auto loss = clip_loss(gen_->synthesis(w), t) + o.l2_lambda * latent_l2(w, w0);
    loss.sum().backward();
    adam.step();
  }
  EXPECT_TRUE(test::tensors_close(res.ws, w.detach(), 1e-4));
  EXPECT_GT((res.ws - w0).abs().max().item<double>(), 1e-2);  // it moved
}

TEST_F(OptimizeTiny, NonFiniteRowStopsAloneAndKeepsAFiniteLatent) {
  auto w0 = sampled_wplus({0, 1});
  w0[1].fill_(1e30F);  // overflows in the generator: this row's loss is NaN from the start
  const auto res = optimize(*gen_, *clip_, nullptr, w0, text("a smiling face"), quick());
  EXPECT_TRUE(res.rows[0].ok);
  EXPECT_GT(res.rows[0].clip_after, res.rows[0].clip_before);
  EXPECT_FALSE(res.rows[1].ok);
  EXPECT_NE(res.rows[1].error.find("NaN or Inf at step 0"), std::string::npos) << res.rows[1].error;
  EXPECT_TRUE(torch::equal(res.ws[1], w0[1]));  // left where it started
}

TEST_F(OptimizeTiny, StyleSpaceMovesOnlyNonRgbLayers) {
  auto o = quick();
  o.space = LatentSpace::kS;
  const auto w0 = sampled_wplus({2});
  const auto res = optimize(*gen_, *clip_, nullptr, w0, text("a smiling face"), o);
  torch::NoGradGuard no_grad;
  const auto s0 = gen_->styles(w0);
  bool moved = false;
  for (size_t l = 0; l < s0.size(); ++l) {
    if (gen_->info().style_is_rgb[l]) {
      EXPECT_TRUE(torch::equal(res.styles[l], s0[l])) << "toRGB layer " << l << " moved";
    } else {
      moved = moved || !torch::equal(res.styles[l], s0[l]);
    }
  }
  EXPECT_TRUE(moved);
  EXPECT_GT(res.rows[0].clip_after, res.rows[0].clip_before);
}

TEST_F(OptimizeTiny, FreeModeIgnoresL2) {
  auto o = quick();
  o.free_mode = true;
  o.l2_lambda = 1e4;  // would pin the latent in edit mode
  const auto w0 = gen_->broadcast(gen_->w_avg().unsqueeze(0));
  const auto res = optimize(*gen_, *clip_, nullptr, w0, text("a smiling face"), o);
  EXPECT_GT((res.ws - w0).abs().max().item<double>(), 0.01);
}

TEST_F(OptimizeTiny, InvalidOptionsAreUsageErrors) {
  const auto w0 = sampled_wplus({0});
  const auto t = text("x");
  const auto expect_usage = [&](OptimizeOptions o, const IdentityModel* id,
                                const std::string& needle) {
    try {
      (void)optimize(*gen_, *clip_, id, w0, t, o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kUsage);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto o = quick();
  o.steps = 0;
  expect_usage(o, nullptr, "invalid --steps 0");
  o = quick();
  o.l2_lambda = -1;
  expect_usage(o, nullptr, "invalid --l2-lambda");
  o = quick();
  o.id_lambda = 0.1;
  expect_usage(o, nullptr, "--id-lambda needs an identity model");
  o = quick();
  o.lr = 0;
  expect_usage(o, nullptr, "invalid --lr");
  o = quick();
  o.cuda_graph = true;  // the tiny models are on the CPU
  expect_usage(o, nullptr, "--cuda-graph needs a CUDA device");
}

}  // namespace
}  // namespace styleclip
