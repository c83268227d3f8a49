// End-to-end: `--class N` for conditional generators and NVIDIA's seed convention, on bundles
// exported from NVIDIA's StyleGAN2-ADA pickles (the fixtures) and on the unconditional tiny bundle.
#include <styleclip/engines/mapper.h>
#include <styleclip/io/latent_io.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::styleclip;
using test::TempDir;

constexpr const char* kCondPickle = "stylegan-nvidia/ada_cond32.pkl";
constexpr const char* kVocab = "clip-tokenizer/bpe_simple_vocab_16e6.txt.gz";

std::string tiny() { return test::testdata("tiny").string(); }

/// Expects a usage error (exit 2, one line, nothing on stdout) whose message is `message` exactly.
void expect_usage_error(const test::RunResult& r, const std::string& message) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.err, "styleclip: error: " + message + "\n");
  EXPECT_EQ(r.out, "");
}

// --- an unconditional bundle refuses --class --------------------------------------------------

TEST(ClassOnUnconditional, EveryCommandThatSamplesRefusesIt) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const std::string msg =
      "--class 1 given, but model bundle '" + tiny() + "' is unconditional (drop --class)";
  expect_usage_error(styleclip({"generate", "--models", tiny(), "--seed", "0", "--class", "1",
                                "--out", (tmp / "g").string()}),
                     msg);
  EXPECT_FALSE(fs::exists(tmp / "g"));
  expect_usage_error(styleclip({"edit", "--models", tiny(), "--text", "a face", "--seed", "0",
                                "--class", "1", "--out", (tmp / "e").string()}),
                     msg);
  EXPECT_FALSE(fs::exists(tmp / "e"));
  expect_usage_error(styleclip({"mapper", "train", "--models", tiny(), "--text", "a face",
                                "--sample", "4", "--class", "1", "--out", (tmp / "m.pt").string()}),
                     msg);
  const auto bundle = test::copy_testdata("tiny", tmp / "b");
  expect_usage_error(styleclip({"global", "prepare", "--models", bundle.string(), "--class", "1"}),
                     "--class 1 given, but model bundle '" + bundle.string() +
                         "' is unconditional (drop --class)");
  EXPECT_FALSE(fs::exists(bundle / "global_stats.partial.pt"));
}

TEST(ClassOnUnconditional, NegativeIsAUsageError) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto r = styleclip({"generate", "--models", tiny(), "--seed", "0", "--class", "-1", "--out",
                            (tmp / "g").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--class"), std::string::npos) << r.err;
}

TEST(ClassOnUnconditional, TorchSeedsKeepTheirWholeRange) {
  // Only numpy's convention limits seeds to 32 bits.
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto r = styleclip(
      {"generate", "--models", tiny(), "--seed", "4294967296", "--out", (tmp / "g").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "g" / "seed4294967296.png"));
}

// --- a conditional NVIDIA bundle ---------------------------------------------------------------

/// ada_cond32.pkl (5 classes, 32 px) exported as a user would, with a random tiny CLIP added
/// for the commands that need one.
class ConditionalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_FIXTURE(kCondPickle);
    const auto r = test::export_stylegan_fixture(kCondPickle, bundle_);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  /// Adds CLIP to the bundle (edit, mapper train and global prepare need it).
  void add_clip() {
    if (!test::have_fixture(kVocab)) GTEST_SKIP() << "fixture '" << kVocab << "' not found";
    const auto r = test::run_program(
        {STYLECLIP_PYTHON, std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py",
         "--random-clip", "tiny", "--seed", "2", "--vocab",
         (test::fixtures_dir() / kVocab).string(), "--out", bundle_.string()});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  [[nodiscard]] std::string classes() const {
    return "model bundle '" + bundle_.string() + "' is conditional with 5 classes (0-4)";
  }
  TempDir tmp_;
  fs::path bundle_ = tmp_ / "cond";
};

TEST_F(ConditionalCli, InfoShowsTheClasses) {
  const auto r = styleclip({"info", "--models", bundle_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("conditional: 5 classes (--class 0-4)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("seeds: z as numpy's RandomState draws it"), std::string::npos) << r.out;
}

TEST_F(ConditionalCli, GenerateNeedsAClassInRange) {
  const auto out = (tmp_ / "g").string();
  expect_usage_error(
      styleclip({"generate", "--models", bundle_.string(), "--seed", "0", "--out", out}),
      "--class is required: " + classes());
  expect_usage_error(styleclip({"generate", "--models", bundle_.string(), "--seed", "0", "--class",
                                "5", "--out", out}),
                     "invalid --class 5: " + classes());
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ConditionalCli, SeedsBeyondNumpysRangeAreUsageErrors) {
  expect_usage_error(
      styleclip({"generate", "--models", bundle_.string(), "--seed", "4294967295-4294967296",
                 "--class", "0", "--out", (tmp_ / "g").string()}),
      "invalid --seed 4294967296: model bundle '" + bundle_.string() +
          "' draws z as NVIDIA's tools do, with numpy's RandomState, whose seeds "
          "are 0-4294967295");
  EXPECT_FALSE(fs::exists(tmp_ / "g"));
}

TEST_F(ConditionalCli, GenerateMatchesNvidiaAndRecordsTheClass) {
  // The fixture's row 3: seed 123, class 123 % 5 = 3, truncation 0.7, computed with NVIDIA's code.
  const auto out = tmp_ / "g";
  const auto r = styleclip({"generate", "--models", bundle_.string(), "--seed", "123", "--class",
                            "3", "--truncation", "0.7", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto expected =
      test::load_pt(test::fixtures_dir() / "stylegan-nvidia/ada_cond32_expected.pt");
  const auto ws = read_tensor_file(out / "seed0123.latent.pt");
  EXPECT_TRUE(
      test::tensors_close(ws, test::dict_tensor(expected, "ws_psi07").slice(0, 3, 4), 1e-5));
  const auto side = json::parse(test::read_text(out / "seed0123.json"));
  EXPECT_EQ(side["input"]["class"], 3);
  EXPECT_EQ(side["input"]["seed"], 123);
}

TEST_F(ConditionalCli, LatentFilesNeedNoClass) {
  const auto g = tmp_ / "g";
  ASSERT_EQ(styleclip({"generate", "--models", bundle_.string(), "--seed", "1", "--class", "1",
                       "--out", g.string()})
                .code,
            0);
  const auto latent = (g / "seed0001.latent.pt").string();
  auto r = styleclip({"generate", "--models", bundle_.string(), "--latent", latent, "--out",
                      (tmp_ / "h").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  // Named after the file's stem; the same W+ renders the same picture.
  EXPECT_FALSE(
      json::parse(test::read_text(tmp_ / "h" / "seed0001.latent.json"))["input"].contains("class"));
  EXPECT_EQ(test::read_text(tmp_ / "h" / "seed0001.latent.png"),
            test::read_text(g / "seed0001.png"));
  expect_usage_error(styleclip({"generate", "--models", bundle_.string(), "--latent", latent,
                                "--class", "1", "--out", (tmp_ / "i").string()}),
                     "--class picks the class of latents sampled with --seed, and nothing is "
                     "sampled here (drop --class)");
}

TEST_F(ConditionalCli, EditRecordsTheClass) {
  add_clip();
  if (HasFatalFailure() || IsSkipped()) return;
  const auto out = tmp_ / "e";
  expect_usage_error(styleclip({"edit", "--models", bundle_.string(), "--text", "a red shape",
                                "--seed", "0", "--steps", "2", "--out", out.string()}),
                     "--class is required: " + classes());
  const auto r = styleclip({"edit", "--models", bundle_.string(), "--text", "a red shape", "--seed",
                            "0", "--class", "2", "--steps", "2", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto side = json::parse(test::read_text(out / "seed0000.a-red-shape.optimize.json"));
  EXPECT_EQ(side["input"]["class"], 2);
}

TEST_F(ConditionalCli, MapperTrainRecordsTheClass) {
  add_clip();
  if (HasFatalFailure() || IsSkipped()) return;
  const auto out = tmp_ / "m.pt";
  const std::vector<std::string> args = {
      "mapper", "train",   "--models", bundle_.string(), "--text", "a red shape", "--sample",
      "4",      "--steps", "2",        "--optimizer",    "adam",   "--out",       out.string()};
  expect_usage_error(styleclip(args), "--class is required: " + classes());
  auto with_class = args;
  with_class.insert(with_class.end(), {"--class", "1"});
  const auto r = styleclip(with_class);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto mapper = load_mapper(out, 8, 32, torch::kCPU);
  EXPECT_EQ(mapper.meta["run"]["data"]["class"], 1) << mapper.meta.dump();
}

TEST_F(ConditionalCli, GlobalPrepareRecordsTheClass) {
  add_clip();
  if (HasFatalFailure() || IsSkipped()) return;
  const std::vector<std::string> args = {"global",    "prepare", "--models", bundle_.string(),
                                         "--samples", "20",      "--images", "2",
                                         "--layers",  "0",       "--chunk",  "64"};
  expect_usage_error(styleclip(args), "--class is required: " + classes());
  auto with_class = args;
  with_class.insert(with_class.end(), {"--class", "4"});
  const auto r = styleclip(with_class);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto m = json::parse(test::read_text(bundle_ / "manifest.json"));
  EXPECT_EQ(m["global_stats"]["options"]["class"], 4) << m["global_stats"].dump();
}

}  // namespace
}  // namespace styleclip
