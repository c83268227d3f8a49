// The workflows as a library: what `styleclip edit` does, called from a program (no CLI), and the
// interruption guard every workflow shares.
#include <styleclip/error.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/edit.h>

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
  // A program that runs a second workflow after an interrupted one is not stopped at once.
  const InterruptGuard again;
  EXPECT_FALSE(InterruptGuard::interrupted());
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
