// The identity model exported from the ArcFace IR-SE50 fixture reproduces the reference's
// backbone features and StyleCLIP's identity features (pool to 256, crop, pool to 112).
#include <styleclip/models/identity.h>

#include <torch/nn/functional/upsampling.h>

#include "test_support.h"

namespace styleclip {
namespace {
namespace F = torch::nn::functional;

TEST(Identity, NarrowIrSe50MatchesReference) {
  SKIP_UNLESS_FIXTURE("arcface-irse50/narrow_expected.pt");
  SKIP_UNLESS_BUNDLE("irse50_narrow");
  torch::NoGradGuard no_grad;
  const auto ex = test::load_pt(test::fixtures_dir() / "arcface-irse50/narrow_expected.pt");
  const IdentityModel model(Bundle::open(test::testdata("irse50_narrow")), torch::kCPU);
  EXPECT_TRUE(test::tensors_close(model.embed(test::dict_tensor(ex, "input_112")),
                                  test::dict_tensor(ex, "features_112"), 1e-4));
  for (const int size : {256, 1024}) {
    const auto key = std::to_string(size);
    const auto images = F::interpolate(test::dict_tensor(ex, "seed_" + key),
                                       F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{size, size})
                                           .mode(torch::kBilinear)
                                           .align_corners(false));
    EXPECT_TRUE(test::tensors_close(model.features(images),
                                    test::dict_tensor(ex, "id_features_" + key), 1e-4))
        << size;
  }
}

}  // namespace
}  // namespace styleclip
