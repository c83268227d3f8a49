// The workflows as a library: what `styleclip edit` does, called from a program (no CLI), and the
// interruption guard every workflow shares.
#include <styleclip/error.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/edit.h>
#include <styleclip/workflows/generate.h>

#include <cmath>
#include <csignal>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

TEST(InterruptGuard, ASignalSetsTheFlagAndANewGuardStartsClean) {
  {
    const InterruptGuard guard;
    EXPECT_FALSE(InterruptGuard::interrupted());
    std::raise(SIGINT);  // caught: sets the flag, the process goes on
    EXPECT_TRUE(InterruptGuard::interrupted());
  }
  // Work after the guard (an inversion outside a batch run) is not taken as interrupted, and a
  // program that runs a second workflow after an interrupted one is not stopped at once.
  EXPECT_FALSE(InterruptGuard::interrupted());
  const InterruptGuard again;
  EXPECT_FALSE(InterruptGuard::interrupted());
}

TEST(BatchRun, SkipsFinishedInputsCountsFailuresAndRefusesARunWhereAllFailed) {
  test::TempDir tmp;
  test::write_text(tmp / "a.json", "{}");
  BatchRun run("test", "2/2", false);
  EXPECT_EQ(run.take(5), (std::pair<std::size_t, std::size_t>{2, 5}));
  run.start();
  EXPECT_TRUE(run.finished("a", tmp / "a.json"));
  EXPECT_FALSE(run.finished("b", tmp / "b.json"));
  run.summary().failed("b", "broken");
  const auto report = run.finish(2, "inputs could be used");
  EXPECT_EQ(report.exit_code, 1);
  EXPECT_EQ(report.summary["skipped"], 1);
  // With overwrite nothing is finished; every input failing is the run's error.
  BatchRun again("test", "", true);
  EXPECT_FALSE(again.finished("a", tmp / "a.json"));
  again.summary().failed("a", "first reason");
  again.summary().failed("b", "second reason");
  try {
    (void)again.finish(2, "inputs could be used");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    EXPECT_STREQ(e.what(), "none of the 2 inputs could be used; the first: first reason");
  }
  EXPECT_THROW(BatchRun("test", "3/2", false), Error);
}

TEST(GenerateWorkflow, CtrlCStopsBetweenGeneratorCallsAndTheRerunFinishes) {
  SKIP_UNLESS_BUNDLE("tiny");
  test::TempDir tmp;
  GenerateRun run;
  run.models = test::testdata("tiny");
  run.seeds = "0-3";
  run.out = tmp / "out";
  run.batch = 1;
  // The user presses Ctrl-C while the first image is being written.
  run.on_output = [](const fs::path&) { std::raise(SIGINT); };
  auto report = run_generate(run);
  EXPECT_EQ(report.exit_code, 130);
  EXPECT_EQ(report.summary["done"], 1);
  EXPECT_EQ(report.summary["interrupted"], true);
  EXPECT_TRUE(fs::exists(tmp / "out" / "seed0000.json"));
  EXPECT_FALSE(fs::exists(tmp / "out" / "seed0001.png"));
  run.on_output = nullptr;
  report = run_generate(run);
  EXPECT_EQ(report.exit_code, 0);
  EXPECT_EQ(report.summary["done"], 3);
  EXPECT_EQ(report.summary["skipped"], 1);
}

class EditWorkflow : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_UNLESS_BUNDLE("tiny"); }
  EditRun run(const std::string& method) {
    EditRun r;
    r.models = test::testdata("tiny");
    r.method = method;
    r.prompts = {"a red face"};
    r.seeds = "1-2";
    r.out = tmp_ / method;
    r.settings.set("--steps", "3");
    return r;
  }
  test::TempDir tmp_;
};

TEST_F(EditWorkflow, RunEditWritesWhatTheCommandWrites) {
  std::vector<fs::path> shown;
  auto r = run("optimize");
  r.on_output = [&](const fs::path& p) { shown.push_back(p); };
  const auto report = run_edit(r);
  EXPECT_EQ(report.exit_code, 0);
  EXPECT_EQ(report.summary["done"], 2);
  ASSERT_EQ(shown.size(), 2u);
  EXPECT_EQ(shown[0], tmp_ / "optimize" / "seed0001.a-red-face.optimize.png");
  const auto side =
      json::parse(test::read_text(tmp_ / "optimize" / "seed0002.a-red-face.optimize.json"));
  EXPECT_EQ(side["options"]["steps"], 3);
  EXPECT_EQ(side["status"], "ok");
  // The same run again skips both (their sidecars exist).
  const auto again = run_edit(r);
  EXPECT_EQ(again.summary["skipped"], 2);
  EXPECT_EQ(again.summary["done"], 0);
}

TEST_F(EditWorkflow, ALibraryCallerGetsTheSameChecksAsTheCommandLine) {
  const auto error_of = [](const EditRun& r) -> std::string {
    try {
      (void)run_edit(r);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kUsage) << e.what();
      return e.what();
    }
    return "no error";
  };
  auto r = run("optimize");
  r.batch = 0;
  EXPECT_NE(error_of(r).find("invalid --batch"), std::string::npos);
  r = run("optimize");
  r.truncation = std::nan("");
  EXPECT_NE(error_of(r).find("invalid --truncation"), std::string::npos);
  r = run("telepathy");
  EXPECT_NE(error_of(r).find("invalid --method 'telepathy': expected optimize, mapper or global"),
            std::string::npos);
  r = run("global");  // --steps belongs to optimize
  EXPECT_NE(error_of(r).find("--steps applies to --method optimize (drop it for global)"),
            std::string::npos);
  r = run("optimize");
  r.settings.set("--steps", "4294967297");  // would wrap to 1 in an int
  EXPECT_NE(error_of(r).find("invalid --steps 4294967297"), std::string::npos);
  r = run("global");
  r.settings = {};
  r.settings.set("--neutral", "face");
  r.settings.set("--target-image", "a.png");  // a path without its pixels
  r.settings.set("--neutral-image", "b.png");
  r.prompts.clear();
  EXPECT_NE(error_of(r).find("--target-image: the picture's pixels are missing"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_ / "optimize"));
  EXPECT_FALSE(fs::exists(tmp_ / "global"));
}

}  // namespace
}  // namespace styleclip
