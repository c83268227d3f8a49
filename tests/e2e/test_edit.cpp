// End-to-end: `styleclip edit --method optimize` on the tiny random bundle.
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

using test::styleclip;

class EditCli : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_UNLESS_BUNDLE("tiny"); }
  std::vector<std::string> base(const std::string& out) {
    return {"edit", "--models", test::testdata("tiny").string(), "--out", out, "--steps", "12"};
  }
  TempDir tmp_;
};

TEST_F(EditCli, SeedsGiveImagesLatentsSidecarsCompareAndVideo) {
  auto args = base(tmp_.path().string());
  for (const std::string a :
       {"--text", "A Smiling Face!", "--seed", "0-1", "--compare", "--frames", "4"})
    args.push_back(a);
  const auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string stem = "seed0001.a-smiling-face.optimize";
  EXPECT_NE(r.out.find((tmp_ / (stem + ".png")).string()), std::string::npos) << r.out;
  EXPECT_EQ(read_image_rgb(tmp_ / (stem + ".png")).sizes(), (std::vector<int64_t>{32, 32, 3}));
  EXPECT_EQ(read_image_rgb(tmp_ / (stem + ".compare.png")).sizes(),
            (std::vector<int64_t>{32, 64, 3}));
  EXPECT_EQ(read_tensor_file(tmp_ / (stem + ".latent.pt")).sizes(),
            (std::vector<int64_t>{1, 8, 32}));
  // Frames at steps 0, 4, 8 and the final image.
  EXPECT_TRUE(fs::exists(tmp_ / (stem + ".frames") / "00008.png"));
  EXPECT_TRUE(fs::exists(tmp_ / (stem + ".frames") / "final.png"));
  const auto side = json::parse(test::read_text(tmp_ / (stem + ".json")));
  EXPECT_EQ(side["engine"], "optimize");
  EXPECT_EQ(side["prompt"], "A Smiling Face!");
  EXPECT_EQ(side["status"], "ok");
  EXPECT_EQ(side["input"]["seed"], 1);
  EXPECT_EQ(side["options"]["clip_input"], "raw");
  EXPECT_EQ(side["options"]["id_lambda"], 0.005);  // the bundle has an identity model
  EXPECT_GT(side["metrics"]["clip_similarity_after"].get<double>(),
            side["metrics"]["clip_similarity_before"].get<double>());
  EXPECT_TRUE(side["metrics"]["identity_similarity"].is_number());
  EXPECT_GT(side["timing"]["steps_per_second"].get<double>(), 0.0);
  EXPECT_EQ(side["models"]["sha256"].size(), 4u);
  // The frames and their video are outputs like any other: the sidecar lists them.
  EXPECT_EQ(side["outputs"]["frames"], stem + ".frames");
  ASSERT_TRUE(side["outputs"].contains("video")) << side["outputs"].dump();
  EXPECT_EQ(side["outputs"]["video"], stem + ".mp4");
  EXPECT_GT(fs::file_size(tmp_ / (stem + ".mp4")), 0u);
}

TEST_F(EditCli, TwoRunsGiveByteIdenticalImagesAndLatents) {
  for (const std::string run : {"a", "b"}) {
    auto args = base((tmp_ / run).string());
    for (const std::string a : {"--text", "purple hair", "--seed", "3"}) args.push_back(a);
    ASSERT_EQ(styleclip(args).code, 0);
  }
  for (const std::string ext : {".png", ".latent.pt"}) {
    const std::string f = "seed0003.purple-hair.optimize" + ext;
    EXPECT_EQ(test::read_text(tmp_ / "a" / f), test::read_text(tmp_ / "b" / f)) << f;
  }
}

TEST_F(EditCli, LatentFileInputAndNonFiniteRowFailsAlone) {
  auto ws = torch::zeros({2, 8, 32});
  ws[1].fill_(1e30F);  // a finite file whose render overflows
  save_tensor_pt(tmp_ / "two.pt", ws);
  auto args = base((tmp_ / "out").string());
  args.insert(args.end(), {"--text", "a face", (tmp_ / "two.pt").string()});
  const auto r = styleclip(args);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("two_001: loss became NaN or Inf at step 0"), std::string::npos) << r.err;
  const auto ok = json::parse(test::read_text(tmp_ / "out" / "two_000.a-face.optimize.json"));
  EXPECT_EQ(ok["status"], "ok");
  const auto bad = json::parse(test::read_text(tmp_ / "out" / "two_001.a-face.optimize.json"));
  EXPECT_EQ(bad["status"], "failed");
}

TEST_F(EditCli, BadInputsExitWithCodesAndMessages) {
  const auto out = (tmp_ / "out").string();
  struct Case {
    std::vector<std::string> extra;
    int code;
    std::string message;
  };
  save_tensor_pt(tmp_ / "wide.pt", torch::zeros({8, 33}));
  const std::vector<Case> cases = {
      {{"--text", "   ", "--seed", "0"}, 2, "--text is empty"},
      {{"--text", "x", (tmp_ / "wide.pt").string()},
       4,
       "has shape [8, 33]: expected [32], [8, 32] or [N, 8, 32]"},
      {{"--text", "x", "--seed", "0", "--steps", "0"}, 2, "invalid --steps 0: must be at least 1"},
      {{"--text", "x", "--seed", "0", "--l2-lambda", "-1"},
       2,
       "invalid --l2-lambda: must be zero or positive"},
      {{"--text", "x", "--seed", "0", "--id-lambda", "-0.5"},
       2,
       "invalid --id-lambda: must be zero or positive"},
      {{"--text", "x"}, 2, "nothing to edit"},
      {{"--text", "x", "--seed", "0", "--method", "magic"},
       2,
       "--method: expected optimize, mapper or global, found 'magic'"},
      {{"--text", "x", "--seed", "0", "--space", "Z"}, 2, "--space: expected W+ or S, found 'Z'"},
      {{"--text", "x", "--seed", "0", "--clip-input", "weird"},
       2,
       "--clip-input: expected raw or normalized, found 'weird'"},
      {{"--text", "x", "--seed", "0", "--mode", "odd"}, 2, "--mode: expected edit or free"},
      {{"--text", "x", "--seed", "0", "--mapper", "m.pt"},
       2,
       "--mapper applies to --method mapper (drop it for optimize)"},
      {{"--text", "x", (tmp_ / "missing.pt").string()}, 4, "file does not exist"},
      {{"--text", "x", "--seed", "0", "--device", "cpu", "--cuda-graph"},
       2,
       "--cuda-graph needs a CUDA device (this run is on cpu): drop --cuda-graph or use "
       "--device cuda"},
      {{"--text", "x", "--neutral", "y", "--seed", "0", "--method", "global", "--cuda-graph"},
       2,
       "--cuda-graph applies to --method optimize (drop it for global)"},
  };
  for (const auto& c : cases) {
    auto args = base(out);
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const auto r = styleclip(args);
    EXPECT_EQ(r.code, c.code) << c.message << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "outputs written for: " << c.message;
  }
}

TEST_F(EditCli, OptionsAreCheckedBeforeTheModelsLoad) {
  // A bundle whose manifest is right but whose generator cannot load: a wrong option must be
  // reported without loading it (at 1024 px that takes seconds).
  const auto dir = test::copy_testdata("tiny", tmp_ / "bundle");
  const auto gen = dir / "generator.pt";
  const std::string junk(static_cast<size_t>(fs::file_size(gen)), 'x');
  test::write_text(gen, junk);
  json manifest = json::parse(test::read_text(dir / "manifest.json"));
  manifest["files"]["generator"]["sha256"] = sha256_hex(junk);
  test::write_text(dir / "manifest.json", manifest.dump(2));
  const std::vector<std::string> args = {"edit",   "--models", dir.string(),
                                         "--text", "x",        "--seed",
                                         "0",      "--out",    (tmp_ / "out").string()};
  auto bad = args;
  bad.insert(bad.end(), {"--steps", "0"});
  auto r = styleclip(bad);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("invalid --steps 0"), std::string::npos) << r.err;
  r = styleclip(args);  // the same command with good options does reach the broken model
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("generator.pt"), std::string::npos) << r.err;
}

TEST_F(EditCli, FreeModeAndStyleSpace) {
  auto args = base((tmp_ / "free").string());
  for (const std::string a : {"--text", "a red car", "--mode", "free"}) args.push_back(a);
  auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp_ / "free" / "free.a-red-car.optimize.png"));
  args = base((tmp_ / "s").string());
  for (const std::string a : {"--text", "a red car", "--seed", "2", "--space", "S"})
    args.push_back(a);
  r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto styles =
      test::load_pt(tmp_ / "s" / "seed0002.a-red-car.optimize.styles.pt").toTensorVector();
  EXPECT_EQ(styles.size(), 11u);
}

}  // namespace
}  // namespace styleclip
