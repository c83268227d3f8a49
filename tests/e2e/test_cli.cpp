// End-to-end: the real `styleclip` binary on bundles made by the exporter. Exit codes and
// messages are asserted word for word where the README promises them.
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::run_program;
using test::RunResult;
using test::TempDir;

using test::styleclip;

std::string tiny() { return test::testdata("tiny").string(); }

TEST(Cli, HelpAndVersion) {
  auto r = styleclip({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
  r = styleclip({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find(STYLECLIP_VERSION), std::string::npos);
}

TEST(Cli, UsageErrorsExitTwo) {
  auto r = styleclip({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("styleclip: error:"), std::string::npos) << r.err;
  r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--out", "x", "--bogus"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
}

TEST(Cli, InfoTextAndJson) {
  SKIP_UNLESS_BUNDLE("tiny");
  auto r = styleclip({"info", "--models", tiny()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("generator StyleGAN2 32x32, w_dim 32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(checksums verified)"), std::string::npos) << r.out;
  r = styleclip({"info", "--models", tiny(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  EXPECT_EQ(j["generator"]["resolution"], 32);
  EXPECT_EQ(j["files"]["generator"]["sha256"].get<std::string>().size(), 64u);
}

TEST(Cli, MissingBundleExitsThree) {
  TempDir tmp;
  const auto r = styleclip({"info", "--models", (tmp / "nope").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.err, "styleclip: error: cannot open model bundle '" + (tmp / "nope").string() +
                       "': folder does not exist (give --models DIR or export one with "
                       "scripts/export_bundle.py)\n");
}

TEST(Cli, CorruptManifestExitsThree) {
  TempDir tmp;
  fs::create_directories(tmp / "b");
  test::write_text(tmp / "b" / "manifest.json", "{ not json");
  const auto r = styleclip({"generate", "--models", (tmp / "b").string(), "--seed", "0", "--out",
                            (tmp / "out").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("invalid manifest"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "out")) << "nothing may be written when the bundle is bad";
}

TEST(Cli, GeneratorOfTheWrongKindExitsThree) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto dir = test::bundle_with_replaced(test::testdata("tiny"), "generator",
                                              test::testdata("tiny") / "clip.pt", tmp / "b");
  const auto r = styleclip(
      {"generate", "--models", dir.string(), "--seed", "0", "--out", (tmp / "out").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("is not a styleclip generator: it has no method 'mapping'"),
            std::string::npos)
      << r.err;
}

TEST(Cli, GenerateSeedsWritesImageLatentSidecar) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto out = tmp / "out";
  const auto r = styleclip(
      {"generate", "--models", tiny(), "--seed", "0-2", "--out", out.string(), "--save-styles"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (out / "seed0000.png").string() + "\n" + (out / "seed0001.png").string() + "\n" +
                       (out / "seed0002.png").string() + "\n");
  for (const std::string name : {"seed0000", "seed0001", "seed0002"}) {
    const auto img = read_image_rgb(out / (name + ".png"));
    EXPECT_EQ(img.sizes(), (std::vector<int64_t>{32, 32, 3}));
    const auto latent = read_tensor_file(out / (name + ".latent.pt"));
    EXPECT_EQ(latent.sizes(), (std::vector<int64_t>{1, 8, 32}));
    const auto side = json::parse(test::read_text(out / (name + ".json")));
    EXPECT_EQ(side["command"], "generate");
    EXPECT_EQ(side["input"]["truncation"], 0.7);
    EXPECT_EQ(side["models"]["sha256"]["generator"].get<std::string>().size(), 64u);
    EXPECT_EQ(side["outputs"]["styles"], name + ".styles.pt");
  }
  // Nothing else (no temporaries) is left in the folder.
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 12);
}

TEST(Cli, PrecisionIsRecordedAndFp16OnTheCpuIsAUsageError) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  auto r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--out", (tmp / "a").string(),
                      "--device", "cpu"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto side = json::parse(test::read_text(tmp / "a" / "seed0000.json"));
  EXPECT_EQ(side["options"]["precision"], "fp32");  // auto on the CPU
  r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--out", (tmp / "b").string(),
                 "--device", "cpu", "--precision", "bf16"});
  ASSERT_EQ(r.code, 0) << r.err;
  side = json::parse(test::read_text(tmp / "b" / "seed0000.json"));
  EXPECT_EQ(side["options"]["precision"], "bf16");
  // The bf16 image is close to the fp32 one but was really computed differently.
  const auto a = read_image_rgb(tmp / "a" / "seed0000.png").to(torch::kInt32);
  const auto b = read_image_rgb(tmp / "b" / "seed0000.png").to(torch::kInt32);
  EXPECT_LE((a - b).abs().max().item<int>(), 24);
  EXPECT_TRUE(a.ne(b).any().item<bool>());

  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"generate", "--seed", "0", "--out", (tmp / "c").string()},
        std::vector<std::string>{"edit", "--seed", "0", "--text", "x", "--out",
                                 (tmp / "c").string()}}) {
    auto args = cmd;
    for (const std::string& extra :
         std::vector<std::string>{"--models", tiny(), "--device", "cpu", "--precision", "fp16"})
      args.push_back(extra);
    r = styleclip(args);
    EXPECT_EQ(r.code, 2) << cmd[0];
    EXPECT_EQ(r.err,
              "styleclip: error: --precision fp16 needs a CUDA device (LibTorch's CPU autocast has "
              "no fp16): use bf16 or fp32 on the CPU\n")
        << cmd[0];
    EXPECT_FALSE(fs::exists(tmp / "c")) << cmd[0];
  }
  r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--out", (tmp / "d").string(),
                 "--precision", "double"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid --precision 'double'"), std::string::npos) << r.err;
}

TEST(Cli, GenerateIsDeterministicAndLatentRoundTrips) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  ASSERT_EQ(
      styleclip({"generate", "--models", tiny(), "--seed", "5", "--out", (tmp / "a").string()})
          .code,
      0);
  ASSERT_EQ(
      styleclip({"generate", "--models", tiny(), "--seed", "5", "--out", (tmp / "b").string()})
          .code,
      0);
  EXPECT_EQ(test::read_text(tmp / "a" / "seed0005.png"),
            test::read_text(tmp / "b" / "seed0005.png"));
  // Re-rendering the saved latent gives the same picture.
  const auto r =
      styleclip({"generate", "--models", tiny(), "--latent",
                 (tmp / "a" / "seed0005.latent.pt").string(), "--out", (tmp / "c").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(test::read_text(tmp / "a" / "seed0005.png"),
            test::read_text(tmp / "c" / "seed0005.latent.png"));
}

TEST(Cli, GenerateParityWithReferenceThroughFiles) {
  SKIP_UNLESS_FIXTURE("stylegan2-rosinality/tiny64_expected.pt");
  SKIP_UNLESS_BUNDLE("tiny64");
  const auto expected =
      test::load_pt(test::fixtures_dir() / "stylegan2-rosinality/tiny64_expected.pt");
  TempDir tmp;
  const auto ws = test::dict_tensor(expected, "ws");
  save_tensor_pt(tmp / "ws.pt", ws);
  const auto r =
      styleclip({"generate", "--models", test::testdata("tiny64").string(), "--latent",
                 (tmp / "ws.pt").string(), "--save-styles", "--out", (tmp / "out").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto want = test::dict_tensor(expected, "image_ws");
  for (int64_t i = 0; i < ws.size(0); ++i) {
    const std::string name = "ws_00" + std::to_string(i);
    // PNG: the reference image through the documented 8-bit conversion; one level of slack for
    // values within 1e-4 of a rounding boundary.
    const auto png = read_image_rgb(tmp / "out" / (name + ".png")).to(torch::kInt32);
    const auto ref = to_uint8_hwc(want[i]).to(torch::kInt32);
    EXPECT_LE((png - ref).abs().max().item<int>(), 1) << name;
    EXPECT_TRUE(
        test::tensors_close(read_tensor_file(tmp / "out" / (name + ".latent.pt"))[0], ws[i], 0.0));
    const auto styles = test::load_pt(tmp / "out" / (name + ".styles.pt")).toTensorVector();
    ASSERT_EQ(styles.size(), 14u);
    for (size_t l = 0; l < styles.size(); ++l) {
      char key[32];
      std::snprintf(key, sizeof key, "style_%02zu", l);
      EXPECT_TRUE(test::tensors_close(styles[l][0], test::dict_tensor(expected, key)[i], 1e-4))
          << key;
    }
  }
}

TEST(Cli, LatentOfTheWrongShapeExitsFour) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  save_tensor_pt(tmp / "bad.pt", torch::zeros({3, 7}));
  const auto r = styleclip({"generate", "--models", tiny(), "--latent", (tmp / "bad.pt").string(),
                            "--out", (tmp / "out").string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err,
            "styleclip: error: latent '" + (tmp / "bad.pt").string() +
                "' has shape [3, 7]: expected [32], [8, 32] or [N, 8, 32] for this generator\n");
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

TEST(Cli, UnwritableOutputFolderExitsTwo) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  test::write_text(tmp / "file", "x");
  // A folder below a regular file cannot be created, even by root.
  const auto r = styleclip(
      {"generate", "--models", tiny(), "--seed", "0", "--out", (tmp / "file" / "sub").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot create output folder '" + (tmp / "file" / "sub").string() + "'"),
            std::string::npos)
      << r.err;
}

TEST(Cli, BadSeedAndMissingInputs) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  auto r =
      styleclip({"generate", "--models", tiny(), "--seed", "3-1", "--out", tmp.path().string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid --seed '3-1'"), std::string::npos) << r.err;
  r = styleclip({"generate", "--models", tiny(), "--out", tmp.path().string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("nothing to generate"), std::string::npos) << r.err;
  r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--out", tmp.path().string(),
                 "--device", "tpu"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid --device 'tpu'"), std::string::npos) << r.err;
}

TEST(Cli, TranslateAndRotateAreForStyleGAN3) {
  // The matrix NVIDIA's gen_images.py stores, stated here: the inverse of a turn by 90° and a
  // shift (x, y) is the turn back, then the shift turned back and negated.
  const auto m = Generator::input_transform_matrix(0.25, -0.5, 90.0);
  const auto want =
      torch::tensor({0.0, -1.0, -0.5, 1.0, 0.0, -0.25, 0.0, 0.0, 1.0}).reshape({3, 3});
  EXPECT_TRUE(test::tensors_close(m, want, 1e-6)) << m;
  EXPECT_TRUE(test::tensors_close(Generator::input_transform_matrix(0, 0, 0), torch::eye(3), 0.0));
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  for (const auto& [extra, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--translate", "0.1,0"},
            "--translate and --rotate move StyleGAN3's input; this "
            "bundle's generator is stylegan2 (drop them)"},
           {{"--rotate", "10"}, "this bundle's generator is stylegan2"},
           {{"--translate", "0.1"}, "invalid --translate '0.1': expected two numbers X,Y"},
           {{"--translate", "a,b"}, "invalid --translate 'a,b'"}}) {
    for (const std::string command : {"generate", "edit"}) {
      std::vector<std::string> args = {command, "--models",          tiny(), "--seed", "0",
                                       "--out", (tmp / "o").string()};
      if (command == "edit") args.insert(args.end(), {"--text", "a face"});
      args.insert(args.end(), extra.begin(), extra.end());
      const auto r = styleclip(args);
      EXPECT_EQ(r.code, 2) << command << " " << extra[0];
      EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    }
  }
  EXPECT_FALSE(fs::exists(tmp / "o"));
}

TEST(Cli, OtherGeneratorSizeWorksUnchanged) {
  SKIP_UNLESS_BUNDLE("other");
  TempDir tmp;
  const auto r = styleclip({"generate", "--models", test::testdata("other").string(), "--seed", "1",
                            "--out", tmp.path().string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 1);
  EXPECT_EQ(read_image_rgb(tmp / "seed0001.png").sizes(), (std::vector<int64_t>{16, 16, 3}));
}

}  // namespace
}  // namespace styleclip

namespace styleclip {
namespace {

/// The options `styleclip CMD... --help` lists as taking a FLOAT.
std::vector<std::string> float_options(const std::vector<std::string>& cmd) {
  auto args = cmd;
  args.push_back("--help");
  const auto r = test::styleclip(args);
  std::vector<std::string> out;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string name;
    std::string type;
    words >> name >> type;
    const auto comma = name.rfind(',');
    if (comma != std::string::npos) name = name.substr(comma + 1);
    if (name.rfind("--", 0) == 0 && type.rfind("FLOAT", 0) == 0) out.push_back(name);
  }
  return out;
}

// Every floating-point option of every command refuses NaN and ±inf with a one-line usage error
// naming it, before anything runs (CLI11's range checks alone let NaN through).
TEST(CliOptions, EveryFloatOptionRefusesNonFiniteNumbers) {
  const std::vector<std::vector<std::string>> commands = {{"info"},
                                                          {"generate"},
                                                          {"edit"},
                                                          {"global", "prepare"},
                                                          {"mapper", "train"},
                                                          {"tokenize"},
                                                          {"embed"},
                                                          {"compare"},
                                                          {"align"},
                                                          {"invert"}};
  int checked = 0;
  test::TempDir tmp;
  for (const auto& cmd : commands) {
    for (const auto& opt : float_options(cmd)) {
      for (const std::string bad : {"nan", "inf", "-inf", "NaN"}) {
        auto args = cmd;
        args.insert(args.end(), {opt, bad, "--out", (tmp / "out").string()});
        const auto r = test::styleclip(args);
        const auto where = cmd.front() + " " + opt + " " + bad;
        EXPECT_EQ(r.code, 2) << where << ": " << r.err;
        // ±inf may meet a range check first; NaN passes every range check, so "finite" catches it.
        const std::string says =
            (bad == "nan" || bad == "NaN") ? ": must be a finite number" : ": ";
        EXPECT_NE(r.err.find(opt + says), std::string::npos) << where << ": " << r.err;
        EXPECT_FALSE(std::filesystem::exists(tmp / "out")) << where;
        ++checked;
      }
    }
  }
  // generate --truncation, edit's strengths and weights, global prepare's sigma, ...: the table
  // must not be empty because the help format changed.
  EXPECT_GE(checked, 4 * 15);
}

}  // namespace
}  // namespace styleclip
