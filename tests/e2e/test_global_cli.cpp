// End-to-end: `styleclip global prepare` (with interruption and --resume), `edit --method global`,
// and the import of the reference's published fs3 / S_mean_std files.
#include <styleclip/engines/global_directions.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>

#include <cstdlib>
#include <iostream>
#include <limits>
#include <thread>

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

/// The directions and statistics of two bundles' global_stats.pt are bit for bit the same.
void expect_same_stats(const fs::path& a, const fs::path& b) {
  const auto info = Bundle::open(a).generator();
  const auto sa = GlobalStats::load(a / "global_stats.pt", info);
  const auto sb = GlobalStats::load(b / "global_stats.pt", info);
  EXPECT_EQ(sa.layers, sb.layers);
  EXPECT_TRUE(torch::equal(sa.directions, sb.directions));
  for (size_t l = 0; l < sa.s_mean.size(); ++l) {
    EXPECT_TRUE(torch::equal(sa.s_mean[l], sb.s_mean[l]));
    EXPECT_TRUE(torch::equal(sa.s_std[l], sb.s_std[l]));
  }
}

TEST_F(GlobalCli, ShardedPreparationMergedEqualsOneMachine) {
  const auto one = copy_bundle("one");
  ASSERT_EQ(prepare(one).code, 0);
  const auto b = copy_bundle("sharded");
  // 64 channels in chunks of 8 are 8 chunks; 3 shards take 2, 3 and 3 of them. The machines may
  // finish in any order: shard 2 first.
  auto r = prepare(b, {"--shard", "2/3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["shard_file"], (b / "global_stats.shard-2-of-3.pt").string());
  EXPECT_EQ(j["channels"], 24);
  EXPECT_EQ(j["shard"]["count"], 3);
  EXPECT_NE(r.err.find("shard 2/3 (--shard 2/3): channels 17..40 of 64 (3 chunks of 8)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("styleclip global merge --models"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(b / "global_stats.pt"));
  // Shard 1 stopped half way (a pre-empted task): the merge names what is not finished.
  r = prepare(b, {"--shard", "1/3", "--max-chunks", "1"});
  EXPECT_EQ(r.code, 130) << r.err;
  r = styleclip({"global", "merge", "--models", b.string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("shards 1, 3 of 3 are not finished: run (or --resume) styleclip global "
                       "prepare --shard 1/3"),
            std::string::npos)
      << r.err;
  r = prepare(b, {"--shard", "1/3", "--resume"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming: 8 of 16 channels already done"), std::string::npos) << r.err;
  // Shard 3 as the third task of a Slurm job array, through the job script as Slurm runs it, with
  // as many threads as the runs above (on a CPU the thread count changes the sums' order).
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const auto threads =
      omp != nullptr ? std::string(omp) : std::to_string(std::thread::hardware_concurrency());
  ::setenv("SLURM_CPUS_PER_TASK", threads.c_str(), 1);
  ::setenv("SLURM_ARRAY_TASK_ID", "12", 1);
  ::setenv("SLURM_ARRAY_TASK_MIN", "10", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  ::setenv("STYLECLIP", STYLECLIP_BINARY, 1);
  ::setenv("STYLECLIP_DEVICE", "cpu", 1);
  r = test::run_program(
      {"/bin/bash",
       (fs::path(STYLECLIP_SOURCE_DIR) / "scripts/jobs/slurm-global-prepare.sbatch").string(),
       b.string(), "--samples", "300", "--images", "2", "--layers", "0,2", "--chunk", "8",
       "--batch", "16"});
  for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT",
                        "SLURM_CPUS_PER_TASK", "STYLECLIP", "STYLECLIP_DEVICE"}) {
    ::unsetenv(v);
  }
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("shard 3/3 (SLURM_ARRAY_TASK_ID)"), std::string::npos) << r.err;
  r = styleclip({"global", "merge", "--models", b.string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["shards"], 3);
  EXPECT_EQ(j["channels"], 64);
  EXPECT_EQ(j["global_stats"], (b / "global_stats.pt").string());
  expect_same_stats(one, b);
  EXPECT_TRUE(test::files_with(b, "-of-3.pt").empty());
  EXPECT_TRUE(test::files_with(b, ".partial.pt").empty());
  const auto m = json::parse(test::read_text(b / "manifest.json"));
  EXPECT_EQ(m["global_stats"]["shards"], 3);
  EXPECT_EQ(m["global_stats"]["options"],
            json::parse(test::read_text(one / "manifest.json"))["global_stats"]["options"]);
  EXPECT_NO_THROW((void)Bundle::open(b));
  // The merged bundle edits like the one-machine one.
  const std::vector<std::string> edit = {"edit",   "--method", "global", "--neutral", "face",
                                         "--text", "smile",    "--seed", "3"};
  auto args = edit;
  args.insert(args.end(), {"--models", one.string(), "--out", (tmp_ / "e1").string()});
  ASSERT_EQ(styleclip(args).code, 0);
  args = edit;
  args.insert(args.end(), {"--models", b.string(), "--out", (tmp_ / "e2").string()});
  ASSERT_EQ(styleclip(args).code, 0);
  const auto name = "seed0003.smile.global.png";
  EXPECT_EQ(test::read_text(tmp_ / "e1" / name), test::read_text(tmp_ / "e2" / name));
}

TEST_F(GlobalCli, MergeRefusesShardsThatDoNotJoin) {
  const auto b = copy_bundle("bad-merge");
  auto r = styleclip({"global", "merge", "--models", b.string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("no finished shards (global_stats.shard-K-of-N.pt) in '" + b.string() +
                       "': run styleclip global prepare --shard K/N"),
            std::string::npos)
      << r.err;
  ASSERT_EQ(prepare(b, {"--shard", "1/2"}).code, 0);
  // Shard 2 made with another seed: other statistics, other options.
  std::vector<std::string> args = {"global",  "prepare",  "--models", b.string(), "--samples",
                                   "300",     "--images", "2",        "--layers", "0,2",
                                   "--chunk", "8",        "--batch",  "16",       "--seed",
                                   "6",       "--shard",  "2/2"};
  ASSERT_EQ(styleclip(args).code, 0);
  r = styleclip({"global", "merge", "--models", b.string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("global_stats.shard-2-of-2.pt': made with other options"), std::string::npos)
      << r.err;
  // Shard 1's file under shard 2's name: the rows do not join.
  fs::copy_file(b / "global_stats.shard-1-of-2.pt", b / "global_stats.shard-2-of-2.pt",
                fs::copy_options::overwrite_existing);
  r = styleclip({"global", "merge", "--models", b.string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("it holds 32 rows, shard 2/2 should hold rows 32..64"), std::string::npos)
      << r.err;
  // A stale shard of another run.
  fs::copy_file(b / "global_stats.shard-1-of-2.pt", b / "global_stats.shard-1-of-4.pt");
  r = styleclip({"global", "merge", "--models", b.string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("holds shards of different runs (of 2, 4 shards): remove the stale ones"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(b / "global_stats.pt"));
  // A checkpoint is continued only with the chunking it was made with.
  fs::remove(b / "global_stats.shard-1-of-4.pt");
  ASSERT_EQ(prepare(b, {"--max-chunks", "1"}).code, 130);
  args = {"global",   "prepare", "--models", b.string(), "--samples", "300", "--images", "2",
          "--layers", "0,2",     "--chunk",  "16",       "--batch",   "16",  "--resume"};
  r = styleclip(args);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("was made with other options"), std::string::npos) << r.err;
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

TEST_F(GlobalCli, CombinedEditIsTheSumOfItsDirections) {
  const auto dir = copy_bundle("combine");
  ASSERT_EQ(prepare(dir).code, 0);
  const auto out = tmp_ / "out";
  test::run_ok({"generate", "--models", dir.string(), "--seed", "3", "--save-styles"}, out,
               {"seed0003.styles.pt"});
  const auto edit = [&](std::vector<std::string> extra, const fs::path& to) {
    std::vector<std::string> args = {"edit",       "--method", "global",   "--models",
                                     dir.string(), "--seed",   "3",        "--neutral",
                                     "face",       "--out",    to.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return styleclip(args);
  };
  ASSERT_EQ(edit({"--text", "smile", "--strength", "3", "--threshold", "0.02"}, out).code, 0);
  ASSERT_EQ(edit({"--text", "red hair", "--strength", "-2", "--threshold", "0.04"}, out).code, 0);
  auto r = edit({"--text", "smile", "--text", "red hair", "--combine", "--strength", "3,-2",
                 "--threshold", "0.02,0.04", "--json"},
                out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 1);  // one output for both prompts
  const auto s = read_tensor_list_pt(out / "seed0003.styles.pt");
  const auto a = read_tensor_list_pt(out / "seed0003.smile.global.styles.pt");
  const auto b = read_tensor_list_pt(out / "seed0003.red-hair.global.styles.pt");
  const auto ab = read_tensor_list_pt(out / "seed0003.smile-red-hair.global.styles.pt");
  ASSERT_EQ(ab.size(), s.size());
  bool a_moved = false;
  bool b_moved = false;
  for (size_t l = 0; l < s.size(); ++l) {
    // s + 3·Δs_smile − 2·Δs_red = (s + 3·Δs_smile) + (s − 2·Δs_red) − s
    EXPECT_TRUE(torch::allclose(ab[l], a[l] + b[l] - s[l], 1e-5, 1e-5)) << "layer " << l;
    a_moved = a_moved || !torch::equal(a[l], s[l]);
    b_moved = b_moved || !torch::equal(b[l], s[l]);
  }
  EXPECT_TRUE(a_moved && b_moved);  // both directions take part
  const auto side = json::parse(test::read_text(out / "seed0003.smile-red-hair.global.json"));
  EXPECT_EQ(side["prompt"], "smile + red hair");
  const auto& parts = side["options"]["combine"];
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1]["prompt"], "red hair");
  EXPECT_EQ(parts[1]["strength"], -2.0);
  EXPECT_EQ(parts[1]["threshold"], 0.04);
  const auto single = json::parse(test::read_text(out / "seed0003.red-hair.global.json"));
  EXPECT_EQ(parts[1]["channels"], single["options"]["channels"]);

  // One value for all prompts is allowed; other counts, and lists without --combine, are not.
  r = edit({"--text", "smile", "--text", "red hair", "--combine", "--strength", "2"}, tmp_ / "one");
  EXPECT_EQ(r.code, 0) << r.err;
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--text", "smile", "--combine"},
            "--combine joins several edits: give two or more --text"},
           {{"--text", "a", "--text", "b", "--combine", "--strength", "3,2,1"},
            "invalid --strength '3,2,1': give one value for all 2 --text, or one for each"},
           {{"--text", "a", "--text", "b", "--combine", "--strength", "3,nan"},
            "--strength: must be a finite number, found 'nan'"},
           {{"--text", "a", "--text", "b", "--combine", "--threshold", "0.1,2"},
            "invalid --threshold '0.1,2': must be in [0, 1]"},
           {{"--text", "a", "--strength", "3,2"},
            "invalid --strength '3,2': one value per --text needs --combine"},
           {{"--text", "a", "--text", "b", "--combine", "--strength-sweep", "0:1:3"},
            "--strength-sweep and --threshold-sweep vary one direction: leave out --combine"}}) {
    r = edit(args, tmp_ / "bad");
    EXPECT_EQ(r.code, 2) << message << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp_ / "bad"));
}

TEST_F(GlobalCli, StyleCodesAreInputsAndAGlobalEditIsRefinedInS) {
  const auto dir = copy_bundle("styles-in");
  ASSERT_EQ(prepare(dir).code, 0);
  const auto gen = tmp_ / "gen";
  test::run_ok({"generate", "--models", dir.string(), "--seed", "3", "--save-styles"}, gen,
               {"seed0003.styles.pt"});
  const std::vector<std::string> global = {"edit",       "--method",    "global", "--models",
                                           dir.string(), "--neutral",   "face",   "--text",
                                           "smile",      "--threshold", "0.02"};
  // A global edit of the seed's style codes equals the global edit of the seed itself.
  auto args = global;
  args.insert(args.end(), {"--seed", "3", "--out", (tmp_ / "from-seed").string()});
  ASSERT_EQ(styleclip(args).code, 0);
  args = global;
  args.insert(args.end(),
              {(gen / "seed0003.styles.pt").string(), "--compare", "--out", (tmp_ / "g").string()});
  auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto edited = tmp_ / "g" / "seed0003.smile.global.styles.pt";
  const auto a = read_tensor_list_pt(tmp_ / "from-seed" / "seed0003.smile.global.styles.pt");
  const auto b = read_tensor_list_pt(edited);
  ASSERT_EQ(a.size(), b.size());
  for (size_t l = 0; l < a.size(); ++l) EXPECT_TRUE(torch::equal(a[l], b[l])) << "layer " << l;
  auto side = json::parse(test::read_text(tmp_ / "g" / "seed0003.smile.global.json"));
  EXPECT_EQ(side["input"]["styles"], fs::absolute(gen / "seed0003.styles.pt").string());

  // The global edit refined by the optimisation engine in S: it starts from the edited codes
  // (its "before" is the global edit's result) and writes codes again.
  r = styleclip({"edit", "--method", "optimize", "--space", "S", "--models", dir.string(), "--text",
                 "red hair", "--steps", "3", "--compare", edited.string(), "--out",
                 (tmp_ / "o").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto base = tmp_ / "o" / "seed0003.smile.global.red-hair.optimize";
  const auto refined = read_tensor_list_pt(base.string() + ".styles.pt");
  ASSERT_EQ(refined.size(), b.size());
  bool moved = false;
  for (size_t l = 0; l < b.size(); ++l) moved = moved || !torch::equal(refined[l], b[l]);
  EXPECT_TRUE(moved);
  const auto global_after = read_image_rgb(tmp_ / "g" / "seed0003.smile.global.png");
  const auto compare = read_image_rgb(base.string() + ".compare.png");
  EXPECT_TRUE(torch::equal(compare.slice(1, 0, global_after.size(1)), global_after));
  side = json::parse(test::read_text(base.string() + ".json"));
  EXPECT_EQ(side["input"]["styles"], fs::absolute(edited).string());
  EXPECT_EQ(side["outputs"]["styles"], "seed0003.smile.global.red-hair.optimize.styles.pt");

  // Engines that edit W+ refuse style codes before any model loads; an unreadable file fails
  // alone among others, and alone is the run's error.
  r = styleclip({"edit", "--models", dir.string(), "--text", "x", edited.string(), "--out",
                 (tmp_ / "bad").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("holds style codes: a style-space input (.styles.pt) is optimised in S: "
                       "add --space S"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "bad"));
  save_tensors_pt(tmp_ / "short.styles.pt", {b[0], b[1]});
  args = global;
  args.insert(args.end(), {(tmp_ / "short.styles.pt").string(), "--out", (tmp_ / "bad").string()});
  r = styleclip(args);
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("short.styles.pt' hold 2 tensors: expected"), std::string::npos) << r.err;
  auto poisoned = b;
  poisoned[1] = poisoned[1].clone();
  poisoned[1][0][0] = std::numeric_limits<float>::quiet_NaN();
  save_tensors_pt(tmp_ / "nan.styles.pt", poisoned);
  args = global;
  args.insert(args.end(), {(tmp_ / "nan.styles.pt").string(), "--out", (tmp_ / "bad").string()});
  r = styleclip(args);
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("nan.styles.pt' have non-finite values in layer 1"), std::string::npos)
      << r.err;
  args = global;
  args.insert(args.end(), {(tmp_ / "short.styles.pt").string(), "--seed", "1", "--json", "--out",
                           (tmp_ / "mixed").string()});
  r = styleclip(args);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 1);
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
