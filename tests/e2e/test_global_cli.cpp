// End-to-end: `styleclip global prepare` (with interruption and --resume), `edit --method global`,
// and the import of the reference's published fs3 / S_mean_std files.
#include <styleclip/engines/global_directions.h>
#include <styleclip/io/image_io.h>

#include <iostream>

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
  void SetUp() override { SKIP_UNLESS_BUNDLE("tiny"); }
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
  r = prepare(b, {"--resume", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto report = json::parse(r.out);
  EXPECT_EQ(report["status"], "done");
  EXPECT_EQ(report["global_stats"], (b / "global_stats.pt").string());
  EXPECT_EQ(report["channels_done"], 64);
  EXPECT_EQ(report["manifest"]["layers"], json({0, 2}));
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
  // The manifest lists the new file with its checksum: the bundle still validates, and what the
  // C++ writer wrote follows the format's JSON Schema (python3-jsonschema; exit 3 without it).
  const auto v = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import json, sys\ntry:\n import jsonschema\nexcept ImportError:\n sys.exit(3)\n"
       "jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
       (b / "manifest.json").string(),
       (fs::path(STYLECLIP_SOURCE_DIR) / "docs/manifest.schema.json").string()});
  if (v.code == 3) {
    std::cerr << "note: python3-jsonschema is absent: the manifest's schema check is skipped\n";
  } else {
    EXPECT_EQ(v.code, 0) << v.err;
  }
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
  // The sweeps are outputs the sidecar lists.
  EXPECT_EQ(side["outputs"]["strength_sweep"], "seed0001.smiling-face.global.strength-sweep.png");
  EXPECT_EQ(side["outputs"]["threshold_sweep"], "seed0001.smiling-face.global.threshold-sweep.png");

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

TEST_F(GlobalCli, AutoThresholdKeepsMoreThanTwentyChannels) {
  // The reference UI's automatic beta: the largest of 0.10, 0.11, ..., 0.29 that keeps more than
  // 20 channels (else 0.10). Checked through the CLI alone: the chosen beta keeps more than 20,
  // and one step higher keeps 20 or fewer.
  const auto dir = copy_bundle("auto");
  ASSERT_EQ(prepare(dir).code, 0);
  const auto run = [&](const std::string& threshold, const std::string& out) {
    const auto r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--neutral",
                              "face", "--text", "smiling face", "--threshold", threshold, "--seed",
                              "0", "--out", (tmp_ / out).string()});
    EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
    return json::parse(test::read_text(tmp_ / out / "seed0000.smiling-face.global.json"));
  };
  const auto side = run("auto", "auto");
  EXPECT_EQ(side["options"]["threshold_requested"], "auto");
  const double beta = side["options"]["threshold"];
  const int step = static_cast<int>(std::lround(beta * 100));
  EXPECT_NEAR(beta, step / 100.0, 1e-9);
  EXPECT_GE(step, 10);
  EXPECT_LE(step, 29);
  const int channels = side["options"]["channels"];
  if (step > 10) {
    EXPECT_GT(channels, 20);
  }
  if (step < 29) {
    char higher[16];
    std::snprintf(higher, sizeof higher, "%.2f", (step + 1) / 100.0);
    EXPECT_LE(run(higher, "higher")["options"]["channels"].get<int>(), 20) << higher;
  }
}

TEST_F(GlobalCli, ImagePairGivesTheDirectionAndItsReverse) {
  // A direction from two pictures instead of two texts: swapping target and neutral reverses
  // it, so (target, neutral) at strength a equals (neutral, target) at -a.
  const auto dir = copy_bundle("pair");
  ASSERT_EQ(prepare(dir).code, 0);
  ASSERT_EQ(styleclip({"generate", "--models", dir.string(), "--seed", "5-6", "--out",
                       (tmp_ / "pics").string()})
                .code,
            0);
  const auto a = (tmp_ / "pics" / "seed0005.png").string();
  const auto b = (tmp_ / "pics" / "seed0006.png").string();
  const auto edit = [&](const std::string& target, const std::string& neutral,
                        const std::string& strength, const std::string& out) {
    return styleclip({"edit", "--method", "global", "--models", dir.string(), "--target-image",
                      target, "--neutral-image", neutral, "--strength", strength, "--threshold",
                      "0.05", "--seed", "0", "--out", (tmp_ / out).string()});
  };
  auto r = edit(a, b, "3", "ab");
  ASSERT_EQ(r.code, 0) << r.err;
  r = edit(b, a, "-3", "ba");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string stem = "seed0000.image-pair.global";
  const auto side = json::parse(test::read_text(tmp_ / "ab" / (stem + ".json")));
  EXPECT_EQ(side["options"]["target_image"], a);
  EXPECT_EQ(side["options"]["neutral_image"], b);
  EXPECT_EQ(side["options"]["templates"], false);
  EXPECT_GT(side["options"]["channels"].get<int>(), 0);
  const auto sa = test::load_pt(tmp_ / "ab" / (stem + ".styles.pt")).toTensorVector();
  const auto sb = test::load_pt(tmp_ / "ba" / (stem + ".styles.pt")).toTensorVector();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t l = 0; l < sa.size(); ++l) EXPECT_TRUE(torch::allclose(sa[l], sb[l], 1e-5, 1e-6));
  // ...and differs from the unedited styles (the direction did something).
  const auto gen = styleclip({"generate", "--models", dir.string(), "--seed", "0", "--save-styles",
                              "--out", (tmp_ / "plain").string()});
  ASSERT_EQ(gen.code, 0) << gen.err;
  const auto plain = test::load_pt(tmp_ / "plain" / "seed0000.styles.pt").toTensorVector();
  bool moved = false;
  for (size_t l = 0; l < sa.size(); ++l) moved = moved || !torch::allclose(sa[l], plain[l]);
  EXPECT_TRUE(moved);
  // The pair goes together, and is one direction: one --text at most.
  const auto out = (tmp_ / "bad").string();
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--target-image", a,
                 "--seed", "0", "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--target-image and --neutral-image go together"), std::string::npos)
      << r.err;
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--target-image", a,
                 "--neutral-image", b, "--text", "x", "--text", "y", "--seed", "0", "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("give at most one --text"), std::string::npos) << r.err;
  r = styleclip({"edit", "--method", "global", "--models", dir.string(), "--target-image",
                 (tmp_ / "absent.png").string(), "--neutral-image", b, "--seed", "0", "--out",
                 out});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("absent.png"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
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
