// End-to-end: `styleclip global prepare` (with interruption and --resume), `edit --method global`,
// and the import of the reference's published fs3 / S_mean_std files.
#include <styleclip/engines/global_directions.h>
#include <styleclip/io/image_io.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

using test::styleclip;

class GlobalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    if (!fs::exists(test::testdata("tiny") / "clip.pt")) GTEST_SKIP() << "tiny bundle has no CLIP";
  }
  /// A private copy of the tiny bundle (preparation writes into the bundle).
  fs::path copy_bundle(const std::string& name) { return test::copy_testdata("tiny", tmp_ / name); }
  test::RunResult prepare(const fs::path& dir, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"global",  "prepare",  "--models", dir.string(), "--samples",
                                     "300",     "--images", "2",        "--layers",   "0,2",
                                     "--chunk", "8",        "--batch",  "16"};
    args.insert(args.end(), extra.begin(), extra.end());
    return styleclip(args);
  }
  TempDir tmp_;
};

TEST_F(GlobalCli, ResumedPreparationEqualsUninterrupted) {
  const auto a = copy_bundle("a");
  auto r = prepare(a);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto b = copy_bundle("b");
  r = prepare(b, {"--max-chunks", "3"});
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_NE(r.err.find("continue with --resume"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(b / "global_stats.partial.pt"));
  EXPECT_FALSE(fs::exists(b / "global_stats.pt"));
  r = prepare(b, {"--resume"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming: 24 of 64 channels already done"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(b / "global_stats.partial.pt"));
  const auto info = Bundle::open(a).generator();
  const auto sa = GlobalStats::load(a / "global_stats.pt", info);
  const auto sb = GlobalStats::load(b / "global_stats.pt", info);
  EXPECT_TRUE(torch::equal(sa.directions, sb.directions));
  for (size_t l = 0; l < sa.s_mean.size(); ++l) {
    EXPECT_TRUE(torch::equal(sa.s_mean[l], sb.s_mean[l]));
    EXPECT_TRUE(torch::equal(sa.s_std[l], sb.s_std[l]));
  }
  // The manifest lists the new file with its checksum: the bundle still validates.
  const auto m = json::parse(test::read_text(b / "manifest.json"));
  EXPECT_EQ(m["global_stats"]["layers"], json({0, 2}));
  EXPECT_NO_THROW((void)Bundle::open(b));
}

TEST_F(GlobalCli, EditWritesOutputsAndReportsChannels) {
  const auto dir = copy_bundle("m");
  ASSERT_EQ(prepare(dir).code, 0);
  const auto out = tmp_ / "out";
  auto r = styleclip({"edit",
                      "--method",
                      "global",
                      "--models",
                      dir.string(),
                      "--neutral",
                      "face",
                      "--text",
                      "smiling face",
                      "--threshold",
                      "0.05",
                      "--seed",
                      "0-1",
                      "--compare",
                      "--out",
                      out.string(),
                      "--strength-sweep",
                      "-4:4:3",
                      "--threshold-sweep",
                      "0.05:0.3:4"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto side = json::parse(test::read_text(out / "seed0001.smiling-face.global.json"));
  EXPECT_EQ(side["engine"], "global");
  EXPECT_EQ(side["options"]["neutral"], "face");
  EXPECT_EQ(side["options"]["threshold"], 0.05);
  EXPECT_GT(side["metrics"]["channels"].get<int>(), 0);
  EXPECT_EQ(test::load_pt(out / "seed0001.smiling-face.global.styles.pt").toTensorVector().size(),
            11u);
  EXPECT_EQ(read_image_rgb(out / "seed0001.smiling-face.global.compare.png").size(1), 64);
  EXPECT_EQ(read_image_rgb(out / "seed0001.smiling-face.global.strength-sweep.png").size(1),
            3 * 32);
  EXPECT_EQ(read_image_rgb(out / "seed0001.smiling-face.global.threshold-sweep.png").size(1),
            4 * 32);

  // A threshold above every relevance: the image comes back unchanged, with an error status.
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--neutral", "face",
                 "--text", "smiling face", "--threshold", "0.99", "--seed", "0", "--out",
                 (tmp_ / "none").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no channel passes --threshold"), std::string::npos) << r.err;
  ASSERT_EQ(styleclip({"generate", "--models", dir.string(), "--seed", "0", "--out",
                       (tmp_ / "gen").string()})
                .code,
            0);
  EXPECT_TRUE(torch::equal(read_image_rgb(tmp_ / "none" / "seed0000.smiling-face.global.png"),
                           read_image_rgb(tmp_ / "gen" / "seed0000.png")));
  const auto none =
      json::parse(test::read_text(tmp_ / "none" / "seed0000.smiling-face.global.json"));
  EXPECT_EQ(none["status"], "failed");
}

TEST_F(GlobalCli, BadInputs) {
  const auto dir = copy_bundle("bad");
  const auto out = (tmp_ / "out").string();
  auto r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--neutral", "face",
                      "--text", "smile", "--seed", "0", "--out", out});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("has no global-direction statistics: run styleclip global prepare"),
            std::string::npos)
      << r.err;
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--neutral", "face",
                 "--text", "smile", "--threshold", "1.5", "--seed", "0", "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid --threshold '1.5': must be in [0, 1]"), std::string::npos) << r.err;
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--text", "smile",
                 "--seed", "0", "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("needs --neutral TEXT"), std::string::npos) << r.err;
  r = prepare(dir, {"--layers", "0,99"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown layer '99'"), std::string::npos) << r.err;
  r = prepare(dir, {"--layers", "1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("layer 1 is a toRGB layer"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(GlobalCli, ImportsThePublishedFileLayout) {
  const auto dir = copy_bundle("imp");
  // A small fs3.npy / S_mean_std pair in the reference's layout: [channels, D] directions for the
  // non-toRGB layers up to 128 px, and a pickle [means, stds] of [1, C] arrays per layer.
  const auto r =
      test::run_program({STYLECLIP_PYTHON, "-c",
                         "import sys, json, pickle, numpy as np\n"
                         "d = sys.argv[1]; m = json.load(open(d + '/manifest.json'))['generator']\n"
                         "dims, rgb = m['style_dims'], m['style_is_rgb']\n"
                         "rows = sum(c for l, c in enumerate(dims) if not rgb[l])\n"
                         "r = np.random.RandomState(0); f = r.randn(rows, 32).astype(np.float32)\n"
                         "np.save(d + '/fs3.npy', f / np.linalg.norm(f, axis=1, keepdims=True))\n"
                         "pickle.dump([[r.randn(1, c) for c in dims], [abs(r.randn(1, c)) for c in "
                         "dims]], open(d + '/S_mean_std', 'wb'))\n",
                         dir.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto e = test::run_program({STYLECLIP_PYTHON,
                                    std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py",
                                    "--global-stats", (dir / "fs3.npy").string(), "--s-mean-std",
                                    (dir / "S_mean_std").string(), "--out", dir.string()});
  ASSERT_EQ(e.code, 0) << e.err;
  const auto stats = GlobalStats::load(dir / "global_stats.pt", Bundle::open(dir).generator());
  EXPECT_EQ(stats.layers, (std::vector<int64_t>{0, 2, 3, 5, 6, 8, 9}));
  const auto ed =
      styleclip({"edit", "--method", "global", "--models", dir.string(), "--neutral", "face",
                 "--text", "smiling face", "--seed", "0", "--out", (tmp_ / "o").string()});
  EXPECT_EQ(ed.code, 0) << ed.err;
}

}  // namespace
}  // namespace styleclip
