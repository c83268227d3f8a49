// End-to-end: `generate`, `invert` and `align` are batch runs like `edit`: folders (recursive,
// globbed), a corrupt input failing alone, finished inputs skipped, shards covering every input
// once, the summary, and Ctrl-C leaving nothing half-written.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <styleclip/io/latent_io.h>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::files_with;
using test::styleclip;
using test::TempDir;

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

/// Runs `cmd` as shards 1/n … n/n into `out` and returns how often each output name was made.
std::map<std::string, int> run_shards(const std::vector<std::string>& cmd, int n) {
  std::map<std::string, int> seen;
  for (int k = 1; k <= n; ++k) {
    const auto r = styleclip(with(
        cmd, {"--shard", std::to_string(k) + "/" + std::to_string(n), "--json", "--overwrite"}));
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) continue;
    const auto summary = json::parse(r.out);  // kept: a range-for over a temporary's part dangles
    for (const auto& row : summary["outputs"]) ++seen[row["name"].get<std::string>()];
  }
  return seen;
}

class BatchCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    fs::create_directories(in_ / "sub");
    for (int i = 0; i < 4; ++i) {
      torch::manual_seed(200 + i);
      save_tensor_pt(in_ / ("w" + std::to_string(i) + ".pt"), torch::randn({8, 32}) * 0.5);
    }
    save_tensor_pt(in_ / "sub" / "deep.pt", torch::randn({8, 32}) * 0.5);
  }
  TempDir tmp_;
  fs::path in_ = tmp_ / "in";
  std::string tiny_ = test::testdata("tiny").string();
};

TEST_F(BatchCommands, GenerateTakesFoldersFailsACorruptFileAloneAndSkipsWhatIsDone) {
  test::write_text(in_ / "corrupt.pt", "this is not a tensor");
  const auto out = tmp_ / "out";
  const std::vector<std::string> cmd = {"generate",   "--models",   tiny_,        "--out",
                                        out.string(), in_.string(), "--recursive"};
  auto r = styleclip(cmd);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(files_with(out, ".png"),
            (std::set<std::string>{"sub/deep.png", "w0.png", "w1.png", "w2.png", "w3.png"}));
  EXPECT_EQ(files_with(out, ".json").size(), 5u);
  EXPECT_NE(r.err.find("generate: 5 done, 0 skipped (outputs exist), 1 failed"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("failed: corrupt: cannot read latent '" + (in_ / "corrupt.pt").string()),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(files_with(out, ".tmp").empty());

  // Again: everything done is skipped, untouched; with seeds only the new seed is rendered.
  const auto before = fs::last_write_time(out / "w0.png");
  r = styleclip(with(cmd, {"--seed", "3", "--json"}));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 1);
  EXPECT_EQ(summary["skipped"], 5);
  EXPECT_EQ(summary["failures"][0]["name"], "corrupt");
  EXPECT_EQ(summary["outputs"][0]["name"], "seed0003");
  EXPECT_EQ(fs::last_write_time(out / "w0.png"), before);

  // Shards of seeds and files: every input exactly once.
  fs::remove(in_ / "corrupt.pt");
  const auto seen = run_shards(with(cmd, {"--seed", "0-2"}), 3);
  EXPECT_EQ(seen.size(), 8u);
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name;

  // A folder with nothing matching is a usage error naming it; nothing is written.
  r = styleclip({"generate", "--models", tiny_, "--out", (tmp_ / "none").string(), in_.string(),
                 "--glob", "*.npy"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("folder '" + in_.string() + "' has no input matching *.npy"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "none"));
}

TEST_F(BatchCommands, InvertTakesFoldersOfCropsFailsABadOneAloneAndSkipsCachedOnes) {
  // Aligned crops the generator can make: seeds 1-3's images, in a folder with a broken PNG.
  auto r = styleclip(
      {"generate", "--models", tiny_, "--seed", "1-3", "--out", (tmp_ / "crops").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& f : files_with(tmp_ / "crops", ".latent.pt")) fs::remove(tmp_ / "crops" / f);
  test::write_text(tmp_ / "crops" / "broken.png", "not a png");
  const auto out = tmp_ / "inv";
  const std::vector<std::string> cmd = {"invert",    "--models",   tiny_,
                                        "--aligned", "--steps",    "4",
                                        "--out",     out.string(), (tmp_ / "crops").string()};
  r = styleclip(with(cmd, {"--json"}));
  EXPECT_EQ(r.code, 1) << r.err;
  auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 3);
  EXPECT_EQ(summary["failed"], 1);
  EXPECT_NE(summary["failures"][0]["error"].get<std::string>().find("broken.png"),
            std::string::npos);
  EXPECT_EQ(files_with(out, ".invert.json"),
            (std::set<std::string>{"seed0001.invert.json", "seed0002.invert.json",
                                   "seed0003.invert.json"}));
  // Again: the cached inversions are skipped and still listed with their latents.
  fs::remove(tmp_ / "crops" / "broken.png");
  r = styleclip(with(cmd, {"--json"}));
  ASSERT_EQ(r.code, 0) << r.err;
  summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 0);
  EXPECT_EQ(summary["skipped"], 3);
  ASSERT_EQ(summary["outputs"].size(), 3u);
  EXPECT_EQ(summary["outputs"][2]["latent"], (out / "seed0003.latent.pt").string());
  EXPECT_EQ(summary["outputs"][2]["cached"], true);
  // Shards split the folder (and redo with --overwrite).
  const auto seen = run_shards(cmd, 2);
  EXPECT_EQ(seen.size(), 3u);
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name;
}

TEST_F(BatchCommands, InterruptedInversionWritesNothingOfTheAbandonedPhoto) {
  auto r = styleclip(
      {"generate", "--models", tiny_, "--seed", "1-3", "--out", (tmp_ / "crops").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = tmp_ / "inv";
  std::vector<std::string> args = {
      STYLECLIP_BINARY, "invert", "--models",   tiny_,    "--aligned", "--steps",
      "100000",         "--out",  out.string(), "--glob", "*.png",     (tmp_ / "crops").string()};
  const int pid = test::start_program(args, tmp_ / "stdout", tmp_ / "stderr");
  // Wait until the projector is working on the first crop (it logs its progress).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (test::read_text(tmp_ / "stderr").find("invert seed0001") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_program(pid), 130);
  const auto err = test::read_text(tmp_ / "stderr");
  EXPECT_NE(err.find("interrupted: rerun the same command to finish the rest"), std::string::npos)
      << err;
  EXPECT_TRUE(files_with(out, ".json").empty());
  EXPECT_TRUE(files_with(out, ".latent.pt").empty());
  EXPECT_TRUE(files_with(out, ".tmp").empty());
}

fs::path yunet() { return test::fixtures_dir() / "faces" / "yunet_2022mar.onnx"; }
fs::path photo(const std::string& name) {
  return test::fixtures_dir() / "images" / (name + ".png");
}

TEST(BatchAlign, FoldersOfPhotosSkipDoneOnesAndShard) {
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  TempDir tmp;
  const auto in = tmp / "photos";
  fs::create_directories(in / "more");
  fs::copy_file(photo("astronaut"), in / "astronaut.png");
  fs::copy_file(photo("astronaut"), in / "more" / "again.PNG");
  fs::copy_file(photo("chelsea"), in / "cat.png");
  test::write_text(in / "notes.txt", "not a photo");
  const auto out = tmp / "out";
  const std::vector<std::string> cmd = {
      "align", "--face-detector", yunet().string(), "--size",     "64",
      "--out", out.string(),      in.string(),      "--recursive"};
  auto r = styleclip(with(cmd, {"--json"}));
  EXPECT_EQ(r.code, 1) << r.err;
  auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 2);
  EXPECT_EQ(summary["failed"], 1);
  EXPECT_NE(summary["failures"][0]["error"].get<std::string>().find("no face found in"),
            std::string::npos);
  EXPECT_EQ(files_with(out, ".aligned.png"),
            (std::set<std::string>{"astronaut.aligned.png", "more/again.aligned.png"}));
  // Again: the aligned ones are skipped.
  r = styleclip(with(cmd, {"--json"}));
  EXPECT_EQ(r.code, 1) << r.err;
  summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 0);
  EXPECT_EQ(summary["skipped"], 2);
  // Shards: the face photos once each (the cat fails in its shard).
  fs::remove(in / "cat.png");
  const auto seen = run_shards(cmd, 2);
  EXPECT_EQ(seen, (std::map<std::string, int>{{"astronaut", 1}, {"more/again", 1}}));
  // Nothing usable: exit 4, naming the first reason.
  fs::create_directories(tmp / "cats");
  fs::copy_file(photo("chelsea"), tmp / "cats" / "a.png");
  fs::copy_file(photo("chelsea"), tmp / "cats" / "b.png");
  r = styleclip({"align", "--face-detector", yunet().string(), "--size", "64", "--out",
                 (tmp / "o2").string(), (tmp / "cats").string()});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_NE(r.err.find("none of the 2 photos could be aligned; the first: no face found in '" +
                       (tmp / "cats" / "a.png").string()),
            std::string::npos)
      << r.err;
}

// `edit --report`: one page for a batch — every result's picture, a table of the sidecars'
// metrics — written after the run, with the prompts' text escaped and nothing fetched from a
// network. (A browser's view of it is not tested here: only its content.)
TEST(EditReport, PageListsEveryResultAndEscapesText) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto out = tmp / "out";
  const auto tiny = test::testdata("tiny").string();
  auto r = styleclip({"edit", "--models", tiny, "--text", "a <b>red</b> & \"round\" shape",
                      "--text", "blue", "--seed", "0-2", "--steps", "2", "--compare", "--report",
                      "--json", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["report"], (out / "index.html").string());
  const auto page = test::read_text(out / "index.html");
  EXPECT_NE(page.find("6 results, 0 failed"), std::string::npos);
  // Every compare picture is shown, by a relative link that resolves to the file.
  const auto compares = files_with(out, ".compare.png");
  ASSERT_EQ(compares.size(), 6u);
  for (const auto& f : compares) {
    EXPECT_NE(page.find("src=\"" + f + "\""), std::string::npos) << f;
  }
  // One table row per result, with its metrics.
  size_t rows = 0;
  for (size_t at = page.find("<tr><td>"); at != std::string::npos;
       at = page.find("<tr><td>", at + 1)) {
    ++rows;
  }
  EXPECT_EQ(rows, 6u);
  const auto side = json::parse(test::read_text(out / "seed0001.blue.optimize.json"));
  char after[32];
  std::snprintf(after, sizeof after, "%.4f",
                side["metrics"]["clip_similarity_after"].get<double>());
  EXPECT_NE(page.find(after), std::string::npos) << after;
  // The prompt is text, not markup; the page needs nothing from a network.
  EXPECT_EQ(page.find("<b>red</b>"), std::string::npos);
  EXPECT_NE(page.find("a &lt;b&gt;red&lt;/b&gt; &amp; &quot;round&quot; shape"), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  // A second run (everything skipped) writes the same page again from the sidecars on disk.
  fs::remove(out / "index.html");
  r = styleclip({"edit", "--models", tiny, "--text", "blue", "--seed", "0-2", "--steps", "2",
                 "--report", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(test::read_text(out / "index.html").find("6 results"), std::string::npos);
}

// The report page in a real browser (headless Chromium, where installed: .ci/run installs it):
// its script sorts the table — asked for by the page's address, as a click on "CLIP after" twice
// would — and a screenshot is kept beside the test binary (report-page.png) to look at.
TEST(EditReport, ChromiumSortsTheTableAndTakesAScreenshot) {
  SKIP_UNLESS_BUNDLE("tiny");
  const std::string chromium = "/usr/bin/chromium";
  if (!fs::exists(chromium)) GTEST_SKIP() << "Chromium is not installed (apt install chromium)";
  TempDir tmp;
  const auto out = tmp / "out";
  auto r =
      styleclip({"edit", "--models", test::testdata("tiny").string(), "--text", "blue", "--seed",
                 "0-3", "--steps", "3", "--compare", "--report", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  // A browser that hangs must not hang the suite: two minutes at most.
  const std::vector<std::string> flags = {
      "/usr/bin/timeout", "120",           chromium,         "--headless",
      "--no-sandbox",     "--disable-gpu", "--no-first-run", "--window-size=1200,900"};
  auto args = flags;
  args.insert(args.end(), {"--dump-dom", "file://" + (out / "index.html").string() + "#sort=-5"});
  r = test::run_program(args);
  ASSERT_EQ(r.code, 0) << r.err;
  // The sixth column (CLIP after) of each table row, in document order.
  const auto clip_after = [](const std::string& html) {
    std::vector<double> v;
    const std::string body = html.substr(html.find("<tbody>"));
    for (size_t at = body.find("<tr>"); at != std::string::npos; at = body.find("<tr>", at + 1)) {
      size_t cell = at;
      for (int c = 0; c < 6; ++c) cell = body.find("<td", cell + 1);
      const auto start = body.find('>', cell) + 1;
      v.push_back(std::stod(body.substr(start, body.find('<', start) - start)));
    }
    return v;
  };
  const auto browser = clip_after(r.out);
  ASSERT_EQ(browser.size(), 4u) << r.out;
  EXPECT_TRUE(std::is_sorted(browser.rbegin(), browser.rend())) << r.out;
  // On disk the rows are in name order, not that one: the browser's script did the sorting.
  const auto disk = clip_after(test::read_text(out / "index.html"));
  EXPECT_FALSE(std::is_sorted(disk.rbegin(), disk.rend()));
  const auto shot =
      fs::path(STYLECLIP_BINARY).parent_path().parent_path() / "tests" / "report-page.png";
  args = flags;
  args.insert(args.end(),
              {"--screenshot=" + shot.string(), "file://" + (out / "index.html").string()});
  r = test::run_program(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(fs::file_size(shot), 10000u);
}

}  // namespace
}  // namespace styleclip
