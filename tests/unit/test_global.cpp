// Engine 3 (global directions) on the tiny random bundle: the batched preparation equals a
// direct one-render-at-a-time computation, and the edit's algebra (β, α, sign, layers) holds.
#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/normalization.h>

#include "test_support.h"

namespace styleclip {
namespace {
namespace F = torch::nn::functional;

TEST(GlobalTemplates, SeventyNineWithoutManyPhotos) {
  const auto& t = imagenet_templates();
  EXPECT_EQ(t.size(), 79u);
  for (const auto& s : t) {
    EXPECT_NE(s, "a photo of many {}.");
    EXPECT_NE(s.find("{}"), std::string::npos) << s;
  }
}

TEST(GlobalLayers, ReferenceDefaultForFfhqLayout) {
  GeneratorInfo info;  // the 1024 px config-f layout (docs/algorithms.md §3.1)
  for (int l = 0; l < 26; ++l) {
    info.style_dims.push_back(512);
    info.style_is_rgb.push_back(l == 1 || (l >= 2 && (l - 2) % 3 == 2));
    info.style_is_input.push_back(false);
    info.style_resolutions.push_back(l < 2 ? 4 : 8 << ((l - 2) / 3));
  }
  EXPECT_EQ(default_global_layers(info),
            (std::vector<int64_t>{0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15}));
}

class GlobalTiny : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    const auto bundle = Bundle::open(test::testdata("tiny"));
    if (!bundle.has("clip")) GTEST_SKIP() << "tiny bundle has no CLIP";
    gen_ = std::make_unique<Generator>(bundle, torch::kCPU);
    clip_ = std::make_unique<Clip>(bundle, torch::kCPU);
    opts_.samples = 300;
    opts_.images = 3;
    opts_.batch = 7;  // does not divide the job count: exercises partial batches
    stats_ = style_statistics(*gen_, opts_);
  }
  GlobalStats prepared(const std::vector<int64_t>& layers) {
    GlobalStats g;
    g.layers = layers;
    g.s_mean = stats_.mean;
    g.s_std = stats_.std;
    std::vector<torch::Tensor> rows;
    for (const auto l : layers) {
      rows.push_back(channel_directions(*gen_, *clip_, stats_, l, 0,
                                        gen_->info().style_dims[size_t(l)], opts_));
    }
    g.directions = torch::cat(rows, 0);
    return g;
  }
  std::unique_ptr<Generator> gen_;
  std::unique_ptr<Clip> clip_;
  PrepareOptions opts_;
  StyleStatistics stats_;
  torch::NoGradGuard no_grad_;
};

TEST_F(GlobalTiny, StatisticsAreMeanAndPopulationStd) {
  // Recompute from the same samples the plain way.
  auto rng = at::make_generator<at::CPUGeneratorImpl>(opts_.seed);
  std::vector<torch::Tensor> zs;
  for (int64_t s = 0; s < opts_.samples; s += 1000) {
    zs.push_back(
        torch::randn({std::min<int64_t>(1000, opts_.samples - s), gen_->info().z_dim}, rng));
  }
  const auto s =
      gen_->styles(gen_->broadcast(gen_->truncate(gen_->mapping(torch::cat(zs, 0)), 0.7)));
  for (size_t l = 0; l < s.size(); ++l) {
    EXPECT_TRUE(test::tensors_close(stats_.mean[l], s[l].mean(0), 1e-5)) << l;
    EXPECT_TRUE(test::tensors_close(stats_.std[l], s[l].std(0, /*unbiased=*/false), 1e-5)) << l;
    EXPECT_TRUE(test::tensors_close(stats_.sample_styles[l], s[l].slice(0, 0, 3), 0.0)) << l;
  }
}

TEST_F(GlobalTiny, BatchedDirectionsEqualOneRenderAtATime) {
  // Layer 2 (convs[0]) renders whole images; layers 6 and 9 (convs[3], convs[5]) start from the
  // reused activations of the layers before them.
  for (const int64_t layer : {2, 6, 9}) {
    const auto fast = channel_directions(*gen_, *clip_, stats_, layer, 5, 9, opts_);
    std::vector<torch::Tensor> slows;
    for (int64_t c = 5; c < 9; ++c) {
      std::vector<torch::Tensor> diffs;
      for (int64_t i = 0; i < opts_.images; ++i) {
        torch::Tensor f[2];
        for (int sign = 0; sign < 2; ++sign) {
          std::vector<torch::Tensor> s;
          for (const auto& t : stats_.sample_styles) s.push_back(t.slice(0, i, i + 1).clone());
          s[layer][0][c] = stats_.mean[layer][c] + (sign == 0 ? -5.0 : 5.0) * stats_.std[layer][c];
          const auto e = clip_->encode_pixels(
              clip_pixels_from_generated(*clip_, gen_->synthesis_from_styles(s)));
          f[sign] = F::normalize(e, F::NormalizeFuncOptions().dim(1));
        }
        diffs.push_back(F::normalize(f[1] - f[0], F::NormalizeFuncOptions().dim(1)));
      }
      slows.push_back(F::normalize(torch::cat(diffs, 0).mean(0), F::NormalizeFuncOptions().dim(0)));
    }
    // A batched and a single convolution round differently (~1e-7), which flips an occasional
    // pixel across an 8-bit level in the reference's uint8 step and moves a direction by up to
    // ~5e-4 (measured). A wrong channel, sign or image moves it by far more: checked below
    // against the other channels' directions, so the bound cannot hide such a mistake. The
    // reuse of earlier layers itself is exact: ReusingEarlierLayersChangesNothing.
    constexpr double kRounding = 2e-3;
    for (int64_t c = 0; c < 4; ++c) {
      EXPECT_TRUE(test::tensors_close(fast[c], slows[c], kRounding))
          << "layer " << layer << " channel " << c + 5;
      for (int64_t other = 0; other < 4; ++other) {
        if (other == c) continue;
        const double apart = (fast[c] - slows[other]).abs().max().item<double>();
        EXPECT_GT(apart, 10 * kRounding) << "layer " << layer << ": channels " << c + 5 << " and "
                                         << other + 5 << " are too alike to tell apart";
      }
    }
  }
}

TEST_F(GlobalTiny, ReusingEarlierLayersChangesNothing) {
  ASSERT_TRUE(gen_->has_prefix_synthesis()) << "the exporter no longer writes synthesis_prefix";
  EXPECT_EQ(gen_->conv_index_of_layer(0), -1);  // conv1
  EXPECT_EQ(gen_->conv_index_of_layer(4), -1);  // a toRGB layer
  EXPECT_EQ(gen_->conv_index_of_layer(9), 5);
  PrepareOptions plain = opts_;
  plain.prefix_cache_mib = 0;
  for (const int64_t layer : {3, 5, 8, 9}) {
    const auto reused = channel_directions(*gen_, *clip_, stats_, layer, 0, 6, opts_);
    const auto full = channel_directions(*gen_, *clip_, stats_, layer, 0, 6, plain);
    EXPECT_TRUE(test::tensors_close(reused, full, 1e-5)) << "layer " << layer;
  }
  // The split synthesis itself: prefix at every conv, then the suffix, equals one pass.
  const auto full_image = gen_->synthesis_from_styles(stats_.sample_styles);
  for (int64_t upto = 0; upto < 6; ++upto) {
    const auto image = gen_->synthesis_suffix(gen_->synthesis_prefix(stats_.sample_styles, upto),
                                              upto, stats_.sample_styles);
    EXPECT_TRUE(test::tensors_close(image, full_image, 1e-6)) << "upto " << upto;
  }
}

TEST_F(GlobalTiny, EditAlgebra) {
  const auto g = prepared({0, 2});
  const auto& info = gen_->info();
  const auto dt = text_direction(*clip_, "smiling face", "face");
  EXPECT_NEAR(dt.norm().item<double>(), 1.0, 1e-5);
  const auto edit = global_delta(g, info, dt, 0.0);
  EXPECT_EQ(edit.channels, g.directions.size(0));
  const auto s = gen_->styles(gen_->broadcast(gen_->mapping(gen_->seed_z(1).unsqueeze(0))));
  // α = 0 is the identity.
  const auto same = apply_delta(s, edit, 0.0);
  for (size_t l = 0; l < s.size(); ++l) EXPECT_TRUE(torch::equal(same[l], s[l]));
  // The sign of α flips the step; only the direction layers move; the largest step is one std.
  const auto up = apply_delta(s, edit, 2.0);
  const auto down = apply_delta(s, edit, -2.0);
  for (size_t l = 0; l < s.size(); ++l) {
    EXPECT_TRUE(test::tensors_close(up[l] - s[l], -(down[l] - s[l]), 1e-6));
    if (l != 0 && l != 2) {
      EXPECT_TRUE(torch::equal(up[l], s[l])) << "layer " << l << " moved";
    }
  }
  double largest = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const auto l = static_cast<size_t>(g.layers[i]);
    largest =
        std::max(largest, (edit.delta[l] / g.s_std[l].clamp_min(1e-12)).abs().max().item<double>());
  }
  EXPECT_NEAR(largest, 1.0, 1e-5);
  // β above every relevance: no channel, an all-zero step, no NaN.
  const auto none = global_delta(g, info, dt, edit.max_relevance + 1e-3);
  EXPECT_EQ(none.channels, 0);
  const auto kept = apply_delta(s, none, 4.1);
  for (size_t l = 0; l < s.size(); ++l) {
    EXPECT_TRUE(torch::equal(kept[l], s[l]));
    EXPECT_TRUE(torch::isfinite(kept[l]).all().item<bool>());
  }
  // The automatic threshold is the reference UI's rule.
  const double beta = auto_threshold(g, info, dt);
  EXPECT_GE(beta, 0.10 - 1e-12);
  EXPECT_LE(beta, 0.29 + 1e-12);
  if (beta > 0.10 + 1e-12) {
    EXPECT_GT(global_delta(g, info, dt, beta).channels, 20);
    EXPECT_LE(global_delta(g, info, dt, beta + 0.01).channels, 20);
  }
}

TEST_F(GlobalTiny, SaveLoadRoundTripAndLayoutCheck) {
  test::TempDir tmp;
  auto g = prepared({0});
  g.meta = {{"note", "test"}};
  g.save(tmp / "g.pt");
  const auto back = GlobalStats::load(tmp / "g.pt", gen_->info());
  EXPECT_EQ(back.layers, g.layers);
  EXPECT_TRUE(torch::equal(back.directions, g.directions));
  EXPECT_EQ(back.meta["note"], "test");
  SKIP_UNLESS_BUNDLE("other");
  try {
    (void)GlobalStats::load(tmp / "g.pt", Bundle::open(test::testdata("other")).generator());
    FAIL() << "loaded statistics of another generator";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(std::string(e.what()).find("invalid global statistics"), std::string::npos)
        << e.what();
  }
}

TEST_F(GlobalTiny, SameTextsAreAUsageError) {
  try {
    (void)text_direction(*clip_, "face", "face");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
  }
}

}  // namespace
}  // namespace styleclip
