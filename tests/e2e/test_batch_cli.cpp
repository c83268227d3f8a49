// End-to-end: batch runs of `styleclip edit` (folders, skipping, shards, prompts files,
// interruption), `styleclip compare` and `--golden`, and the exit codes of the README's table.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>

#include <torch/cuda.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::styleclip;
using test::TempDir;

class BatchCli : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    fs::create_directories(in_);
    for (int i = 0; i < 6; ++i) {
      torch::manual_seed(100 + i);
      save_tensor_pt(in_ / ("w" + std::to_string(i) + ".pt"), torch::randn({8, 32}) * 0.5);
    }
  }
  /// A fast edit (two optimisation steps) of `inputs` into `out`.
  std::vector<std::string> edit(const fs::path& out, std::vector<std::string> extra) const {
    std::vector<std::string> args = {"edit",  "--models",   test::testdata("tiny").string(),
                                     "--out", out.string(), "--steps",
                                     "2",     "--text",     "a face"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  static std::set<std::string> files_with(const fs::path& dir, const std::string& suffix) {
    return test::files_with(dir, suffix);
  }
  TempDir tmp_;
  fs::path in_ = tmp_ / "in";
};

TEST_F(BatchCli, FolderWithACorruptFileEditsTheRestThenSkipsThem) {
  test::write_text(in_ / "corrupt.pt", "this is not a tensor");
  const auto out = tmp_ / "out";
  auto r = styleclip(edit(out, {in_.string()}));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(files_with(out, ".optimize.json").size(), 6u);
  EXPECT_EQ(files_with(out, ".optimize.png").size(), 6u);
  EXPECT_NE(r.err.find("6 done, 0 skipped (outputs exist), 1 failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("failed: corrupt: cannot read latent '" + (in_ / "corrupt.pt").string()),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(files_with(out, ".tmp").empty());

  // The second run finds every output and skips it; the corrupt file still fails.
  const auto before = fs::last_write_time(out / "w0.a-face.optimize.png");
  r = styleclip(edit(out, {in_.string(), "--json"}));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 0);
  EXPECT_EQ(summary["skipped"], 6);
  EXPECT_EQ(summary["failed"], 1);
  EXPECT_EQ(summary["failures"][0]["name"], "corrupt");
  EXPECT_EQ(fs::last_write_time(out / "w0.a-face.optimize.png"), before);

  // --overwrite computes them again.
  fs::remove(in_ / "corrupt.pt");
  r = styleclip(edit(out, {in_.string(), "--json", "--overwrite"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 6);
}

TEST_F(BatchCli, RecursiveFoldersKeepTheirLayoutAndGlobsSelect) {
  fs::create_directories(in_ / "sub");
  save_tensor_pt(in_ / "sub" / "deep.pt", torch::zeros({8, 32}));
  test::write_text(in_ / "notes.txt", "not an input");
  const auto out = tmp_ / "out";
  auto r = styleclip(edit(out, {in_.string(), "--recursive", "--glob", "deep*", "--json"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(files_with(out, ".json"), (std::set<std::string>{"sub/deep.a-face.optimize.json"}));
  // Without --recursive the sub-folder is not searched, and nothing matches.
  r = styleclip(edit(out, {in_.string(), "--glob", "deep*"}));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("folder '" + in_.string() + "' has no input matching deep*"),
            std::string::npos)
      << r.err;
}

TEST_F(BatchCli, ShardsCoverEveryInputExactlyOnce) {
  std::map<std::string, int> seen;
  for (int k = 1; k <= 3; ++k) {
    const auto r = styleclip(edit(tmp_ / "out", {in_.string(), "--seed", "0-4", "--shard",
                                                 std::to_string(k) + "/3", "--json"}));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto summary = json::parse(r.out);
    // 11 inputs (5 seeds, 6 files) in 3 slices: 3, 4, 4.
    EXPECT_EQ(summary["done"].get<int>(), k == 1 ? 3 : 4);
    for (const auto& row : summary["outputs"]) ++seen[row["name"].get<std::string>()];
  }
  EXPECT_EQ(seen.size(), 11u);
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name;

  // --shard auto reads a Slurm job array's variables (IDs starting at 0 here).
  ::setenv("SLURM_ARRAY_TASK_ID", "2", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  ::setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
  auto r =
      styleclip(edit(tmp_ / "auto", {in_.string(), "--seed", "0-4", "--shard", "auto", "--json"}));
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
  ::unsetenv("SLURM_ARRAY_TASK_MIN");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("shard 3/3 (SLURM_ARRAY_TASK_ID): inputs 8..11 of 11"), std::string::npos)
      << r.err;
  // … and a Kubernetes indexed Job's, with the shard count from STYLECLIP_SHARDS.
  ::setenv("JOB_COMPLETION_INDEX", "0", 1);
  ::setenv("STYLECLIP_SHARDS", "2", 1);
  r = styleclip(edit(tmp_ / "k8s", {"--seed", "0-3", "--shard", "auto", "--json"}));
  ::unsetenv("JOB_COMPLETION_INDEX");
  ::unsetenv("STYLECLIP_SHARDS");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 2);

  for (const auto& [spec, message] : std::vector<std::pair<std::string, std::string>>{
           {"0/3", "invalid shard 0/3 (from --shard 0/3): need 1 <= K <= N"},
           {"4/3", "need 1 <= K <= N"},
           {"two", "invalid --shard 'two': expected K/N (e.g. 2/8) or auto"},
           {"auto", "--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set"}}) {
    r = styleclip(edit(tmp_ / "bad", {"--seed", "0", "--shard", spec}));
    EXPECT_EQ(r.code, 2) << spec;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp_ / "bad"));
}

TEST_F(BatchCli, SeveralPromptsFromFlagsAndAFile) {
  test::write_text(tmp_ / "prompts.txt", "# colours\nred hair\n\n  blue eyes  \r\n");
  const auto out = tmp_ / "out";
  auto r = styleclip(edit(out, {"--seed", "0-1", "--text", "a smile", "--prompts",
                                (tmp_ / "prompts.txt").string(), "--json"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 8);  // 2 seeds x 4 prompts ("a face" from edit())
  for (const auto* tag : {"a-face", "a-smile", "red-hair", "blue-eyes"}) {
    const auto side = out / ("seed0001." + std::string(tag) + ".optimize.json");
    ASSERT_TRUE(fs::exists(side)) << side;
  }
  EXPECT_EQ(json::parse(test::read_text(out / "seed0000.blue-eyes.optimize.json"))["prompt"],
            "blue eyes");

  test::write_text(tmp_ / "empty.txt", "# nothing\n\n");
  for (const auto& [file, message] : std::vector<std::pair<fs::path, std::string>>{
           {tmp_ / "empty.txt", "': no prompt in it (one per line; '#' starts a comment)"},
           {tmp_ / "absent.txt", "absent.txt': file does not exist"}}) {
    r = styleclip(edit(tmp_ / "bad", {"--seed", "0", "--prompts", file.string()}));
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find("cannot read prompts '" + file.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp_ / "bad"));
}

TEST_F(BatchCli, AnOutputNeverReplacesAnInput) {
  // Editing a folder into itself, where an earlier output was copied back in as an input.
  auto r = styleclip(edit(in_, {(in_ / "w0.pt").string()}));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto produced = in_ / "w0.a-face.optimize.latent.pt";
  const auto bytes = test::read_text(produced);
  r = styleclip(edit(in_, {in_.string(), "--overwrite", "--glob", "w0*"}));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("failed: w0: its output '" + (in_ / "w0.a-face.optimize").string() +
                       ".*' would replace an input file (choose another --out)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(test::read_text(produced), bytes);
}

TEST_F(BatchCli, InterruptedRunLeavesNoPartialFileAndTheRerunFinishes) {
  const auto out = tmp_ / "out";
  auto args = edit(out, {"--seed", "0-7", "--batch", "1", "--steps", "25"});
  args.insert(args.begin(), STYLECLIP_BINARY);
  const int pid = test::start_program(args, tmp_ / "stdout", tmp_ / "stderr");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (files_with(out, ".json").empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_program(pid), 130);
  const auto err = test::read_text(tmp_ / "stderr");
  EXPECT_NE(err.find("interrupted: rerun the same command to finish the rest"), std::string::npos)
      << err;
  const auto sidecars = files_with(out, ".json");
  ASSERT_GE(sidecars.size(), 1u);
  ASSERT_LT(sidecars.size(), 8u) << "the run finished before the signal";
  EXPECT_TRUE(files_with(out, ".tmp").empty());
  // Every item on disk is whole: image, latent and sidecar together.
  EXPECT_EQ(files_with(out, ".optimize.png").size(), sidecars.size());
  EXPECT_EQ(files_with(out, ".latent.pt").size(), sidecars.size());

  args.erase(args.begin());
  args.push_back("--json");
  const auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary["skipped"].get<size_t>(), sidecars.size());
  EXPECT_EQ(summary["done"].get<size_t>(), 8 - sidecars.size());
  EXPECT_EQ(files_with(out, ".json").size(), 8u);
}

TEST_F(BatchCli, InterruptedRunWithFramesLeavesNoPartialFrames) {
  // Frames are written while a batch is optimised; a batch abandoned by Ctrl-C must not leave
  // them behind (a rerun redoes it, and a frames folder without its sidecar is a half output).
  const auto out = tmp_ / "out";
  auto args = edit(out, {"--seed", "0-3", "--batch", "1", "--steps", "400", "--frames", "1"});
  args.insert(args.begin(), STYLECLIP_BINARY);
  const int pid = test::start_program(args, tmp_ / "stdout", tmp_ / "stderr");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (files_with(out, "00003.png").empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(files_with(out, "00003.png").empty()) << "no frames appeared";
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_program(pid), 130);
  EXPECT_TRUE(files_with(out, ".tmp").empty());
  // Every frames folder left belongs to a finished item (its sidecar is there).
  for (const auto& e : fs::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".frames") != 0) continue;
    EXPECT_TRUE(fs::exists(out / (name.substr(0, name.size() - 7) + ".json")))
        << "partial frames left: " << name;
  }
}

TEST_F(BatchCli, CompareAndGoldenDetectDrift) {
  const auto golden = tmp_ / "golden";
  ASSERT_EQ(styleclip(edit(golden, {"--seed", "0-1", "--compare"})).code, 0);
  // The same run again agrees with it (timings, times and paths are not compared).
  auto r =
      styleclip(edit(tmp_ / "again", {"--seed", "0-1", "--compare", "--golden", golden.string()}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("matches '" + golden.string() + "'"), std::string::npos) << r.err;

  r = styleclip({"compare", golden.string(), (tmp_ / "again").string(), "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["compared"], 8);  // 2 x (png, compare.png, latent.pt, json)

  // One pixel two levels off: beyond the default tolerance of one level.
  fs::copy(golden, tmp_ / "drift", fs::copy_options::recursive);
  const auto png = tmp_ / "drift" / "seed0001.a-face.optimize.png";
  cv::Mat img = cv::imread(png.string(), cv::IMREAD_UNCHANGED);
  auto& px = img.at<cv::Vec3b>(3, 4);
  px[1] = static_cast<unsigned char>(px[1] > 127 ? px[1] - 2 : px[1] + 2);
  ASSERT_TRUE(cv::imwrite(png.string(), img));
  r = styleclip({"compare", golden.string(), (tmp_ / "drift").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("drift: seed0001.a-face.optimize.png: image differs by up to 2 levels "
                       "(tolerance 1)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("1 pixels beyond tolerance"), std::string::npos) << r.err;
  EXPECT_EQ(
      styleclip({"compare", golden.string(), (tmp_ / "drift").string(), "--tolerance", "2"}).code,
      0);

  // A changed metric, a missing file and an extra file are each named.
  auto side = json::parse(test::read_text(tmp_ / "drift" / "seed0000.a-face.optimize.json"));
  side["metrics"]["clip_similarity_after"] = 0.5;
  test::write_text(tmp_ / "drift" / "seed0000.a-face.optimize.json", side.dump());
  fs::remove(tmp_ / "drift" / "seed0000.a-face.optimize.latent.pt");
  const auto latent = tmp_ / "drift" / "seed0001.a-face.optimize.latent.pt";
  save_tensor_pt(latent, read_tensor_file(latent) + 1e-3);
  test::write_text(tmp_ / "drift" / "extra.txt", "x");
  r = styleclip({"compare", golden.string(), (tmp_ / "drift").string()});
  EXPECT_EQ(r.code, 1);
  for (const auto* m : {"seed0000.a-face.optimize.json.metrics.clip_similarity_after is 0.5, "
                        "expected",
                        "seed0000.a-face.optimize.latent.pt: missing", "extra.txt: unexpected",
                        "seed0001.a-face.optimize.latent.pt: tensors differ by up to 0.001 "
                        "(tolerance 0.0001)"}) {
    EXPECT_NE(r.err.find(m), std::string::npos) << m << "\n" << r.err;
  }
  r = styleclip({"compare", (tmp_ / "nowhere").string(), golden.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("expected folder '" + (tmp_ / "nowhere").string() + "' does not exist"),
            std::string::npos)
      << r.err;
}

TEST_F(BatchCli, OutOfMemoryNamesTheBatchAndSuggestsASmallerOne) {
  // The address space is capped at 2 GiB (util-linux prlimit): LibTorch starts, but one batch of
  // 3000 renders cannot be allocated.
  if (!fs::exists("/usr/bin/prlimit")) GTEST_SKIP() << "no /usr/bin/prlimit";
  auto args = edit(tmp_ / "out", {"--seed", "0-2999", "--batch", "3000", "--steps", "1"});
  args.insert(args.begin(), {"/usr/bin/prlimit", "--as=2147483648", STYLECLIP_BINARY});
  const auto r = test::run_program(args);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("styleclip: error: out of memory editing seed0000 … seed2999 (3000 inputs "
                       "per batch): use a smaller --batch"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(files_with(tmp_ / "out", ".png").empty());
}

TEST_F(BatchCli, MissingCudaDeviceExitsWithTheDeviceCode) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has CUDA";
  const auto r = styleclip({"generate", "--models", test::testdata("tiny").string(), "--seed", "0",
                            "--device", "cuda", "--out", (tmp_ / "out").string()});
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "out"));
}

}  // namespace
}  // namespace styleclip
