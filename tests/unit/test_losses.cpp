// The loss terms: the separable CLIP resize equals the reference's upsample-then-pool; the L2
// term is a per-row sum of squares.
#include <styleclip/losses/losses.h>

#include "test_support.h"

namespace styleclip {
namespace {

/// The reference's path (criteria/clip_loss.py): nearest ×u, then k×k average pooling.
torch::Tensor upsample_then_pool(const torch::Tensor& x, int64_t u, int64_t k) {
  auto up = torch::upsample_nearest2d(x, {x.size(2) * u, x.size(3) * u});
  return torch::avg_pool2d(up, {k, k});
}

TEST(ClipResize, EqualsUpsampleThenPool) {
  torch::manual_seed(0);
  struct Case {
    int64_t in, out, u, k;
  };
  // 1024 → 224 is the reference's ×7 / 32; the same rule at sizes a test can afford.
  for (const auto c : {Case{64, 224, 7, 2}, Case{128, 224, 7, 4}, Case{256, 224, 7, 8},
                       Case{32, 224, 7, 1}, Case{64, 32, 1, 2}}) {
    const ClipResize resize(c.in, c.out, torch::kCPU);
    EXPECT_EQ(resize.upsample(), c.u);
    EXPECT_EQ(resize.pool(), c.k);
    // In float64 the two paths agree to rounding; in float32 to its summation error.
    const auto x = torch::randn({2, 3, c.in, c.in}, torch::kFloat64);
    EXPECT_TRUE(test::tensors_close(resize(x), upsample_then_pool(x, c.u, c.k), 1e-6))
        << c.in << "→" << c.out;
    const auto x32 = x.to(torch::kFloat32);
    EXPECT_TRUE(test::tensors_close(resize(x32), upsample_then_pool(x32, c.u, c.k), 1e-5))
        << c.in << "→" << c.out;
  }
}

TEST(ClipResize, RowsAreAveragingWeights) {
  const ClipResize resize(1024, 224, torch::kCPU);
  const auto& r = resize.matrix();
  EXPECT_EQ(r.sizes(), (std::vector<int64_t>{224, 1024}));
  EXPECT_TRUE(test::tensors_close(r.sum(1), torch::ones({224}), 1e-6));
  // Each output pixel covers 32 upsampled pixels, i.e. 5 or 6 source pixels (docs/algorithms.md
  // §1.2).
  const auto nnz = (r > 0).sum(1);
  EXPECT_GE(nnz.min().item<int64_t>(), 5);
  EXPECT_LE(nnz.max().item<int64_t>(), 6);
}

TEST(LatentL2, IsASumOfSquaresPerRow) {
  const auto a = torch::zeros({2, 3, 4});
  auto b = torch::zeros({2, 3, 4});
  b[0].fill_(1.0);
  b[1][2][3] = 2.0;
  EXPECT_TRUE(test::tensors_close(latent_l2(a, b), torch::tensor({12.0F, 4.0F}), 0.0));
  EXPECT_TRUE(test::tensors_close(
      latent_l2(std::vector<torch::Tensor>{a, a}, std::vector<torch::Tensor>{b, b}),
      torch::tensor({24.0F, 8.0F}), 0.0));
}

}  // namespace
}  // namespace styleclip
