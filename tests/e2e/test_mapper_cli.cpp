// End-to-end: `edit --method mapper` with a mapper imported from StyleCLIP's checkpoint layout.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <styleclip/engines/mapper.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

using test::styleclip;

class MapperCli : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    // A random mapper in the published layout for this generator (8 rows of width 32), imported.
    const auto r = test::run_program({STYLECLIP_PYTHON, "-c",
                                      "import sys, torch\n"
                                      "sys.path.insert(0, sys.argv[1] + '/scripts')\n"
                                      "from styleclip_export import mapper\n"
                                      "torch.save(mapper.random_mapper_checkpoint(w_dim=32, "
                                      "stylegan_size=32, description='purple hair'),"
                                      " sys.argv[2])\n",
                                      STYLECLIP_SOURCE_DIR, (tmp_ / "ckpt.pt").string()});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto e = test::run_program(
        {STYLECLIP_PYTHON, std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py",
         "--mapper", (tmp_ / "ckpt.pt").string(), "--num-ws", "8", "--out", mapper_.string()});
    ASSERT_EQ(e.code, 0) << e.err;
  }
  test::TempDir tmp_;
  fs::path mapper_ = tmp_ / "purple.mapper.pt";
};

TEST_F(MapperCli, EditsInBatchesAndStrengthZeroIsTheIdentity) {
  const auto tiny = test::testdata("tiny").string();
  auto r = styleclip({"edit", "--method", "mapper", "--mapper", mapper_.string(), "--models", tiny,
                      "--seed", "0-4", "--batch", "5", "--compare", "--out", (tmp_ / "a").string(),
                      "--strength-sweep", "0:0.2:3"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto side = json::parse(test::read_text(tmp_ / "a" / "seed0004.purple-hair.mapper.json"));
  EXPECT_EQ(side["engine"], "mapper");
  EXPECT_EQ(read_image_rgb(tmp_ / "a" / "seed0004.purple-hair.mapper.strength-sweep.png").size(1),
            3 * 32);
  EXPECT_EQ(side["prompt"], "purple hair");  // from the mapper file
  EXPECT_EQ(side["options"]["strength"], 0.1);
  EXPECT_GT(side["timing"]["latents_per_second"].get<double>(), 0.0);
  EXPECT_EQ(read_tensor_file(tmp_ / "a" / "seed0004.purple-hair.mapper.latent.pt").sizes(),
            (std::vector<int64_t>{1, 8, 32}));
  r = styleclip({"edit", "--method", "mapper", "--mapper", mapper_.string(), "--models", tiny,
                 "--seed", "2", "--strength", "0", "--out", (tmp_ / "zero").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(
      styleclip({"generate", "--models", tiny, "--seed", "2", "--out", (tmp_ / "gen").string()})
          .code,
      0);
  EXPECT_EQ(test::read_text(tmp_ / "zero" / "seed0002.purple-hair.mapper.png"),
            test::read_text(tmp_ / "gen" / "seed0002.png"));
}

TEST_F(MapperCli, MismatchAndMissingMapperAreClearErrors) {
  SKIP_UNLESS_FIXTURE("mapper-styleclip/mohawk_nofine.pt");
  const auto mohawk = tmp_ / "mohawk.mapper.pt";
  const auto e = test::run_program(
      {STYLECLIP_PYTHON, std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py",
       "--mapper", (test::fixtures_dir() / "mapper-styleclip/mohawk_nofine.pt").string(), "--out",
       mohawk.string()});
  ASSERT_EQ(e.code, 0) << e.err;
  auto r =
      styleclip({"edit", "--method", "mapper", "--mapper", mohawk.string(), "--models",
                 test::testdata("tiny").string(), "--seed", "0", "--out", (tmp_ / "o").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("does not fit this generator: expected 8 W+ rows of width 32, found 18 rows "
                       "of width 512"),
            std::string::npos)
      << r.err;
  r = styleclip({"edit", "--method", "mapper", "--models", test::testdata("tiny").string(),
                 "--seed", "0", "--out", (tmp_ / "o").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--method mapper needs --mapper FILE"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "o"));
}

}  // namespace
}  // namespace styleclip

namespace styleclip {
namespace {

class MapperTrainCli : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_UNLESS_BUNDLE("tiny"); }
  test::RunResult train(const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "mapper",      "train",        "--models", test::testdata("tiny").string(),
        "--text",      "a blue shape", "--sample", "20",
        "--optimizer", "adam",         "--lr",     "0.5",
        "--val-every", "10",           "--out",    out};
    args.insert(args.end(), extra.begin(), extra.end());
    return styleclip(args);
  }
  test::TempDir tmp_;
};

TEST_F(MapperTrainCli, TrainingLowersHeldOutClipLossAndTheMapperApplies) {
  const auto out = (tmp_ / "purple.mapper.pt").string();
  const auto r = train(out, {"--steps", "60", "--image-every", "30"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_image_rgb(out + ".samples/step0000060.png").sizes(),
            (std::vector<int64_t>{32, 4 * 32, 3}));
  const auto m = load_mapper(out, 8, 32);
  const auto history = m.meta["history"];
  ASSERT_GE(history.size(), 2u);
  EXPECT_LT(history.back()["val_clip_loss"].get<double>(),
            history.front()["val_clip_loss"].get<double>() - 0.002)
      << history.dump();
  EXPECT_EQ(m.meta["prompt"], "a blue shape");
  EXPECT_EQ(m.meta["generator_sha256"].get<std::string>().size(), 64u);
  EXPECT_FALSE(std::filesystem::exists(out + ".ckpt"));
  const auto e =
      styleclip({"edit", "--method", "mapper", "--mapper", out, "--models",
                 test::testdata("tiny").string(), "--seed", "0", "--out", (tmp_ / "e").string()});
  EXPECT_EQ(e.code, 0) << e.err;
}

TEST_F(MapperTrainCli, JsonReportsTheMapperOrItsCheckpoint) {
  const auto out = (tmp_ / "j.mapper.pt").string();
  auto r = train(out, {"--steps", "4", "--val-every", "2", "--max-steps", "2", "--json"});
  EXPECT_EQ(r.code, 130) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["status"], "stopped");
  EXPECT_EQ(j["steps_done"], 2);
  EXPECT_TRUE(j["mapper"].is_null());
  EXPECT_EQ(j["checkpoint"], out + ".ckpt");
  r = train(out, {"--steps", "4", "--val-every", "2", "--resume", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["status"], "done");
  EXPECT_EQ(j["mapper"], out);
  EXPECT_EQ(j["steps_done"], 4);
  EXPECT_EQ(j["history"].size(), 3u);  // steps 0, 2 and 4
}

TEST_F(MapperTrainCli, ResumedTrainingEqualsUninterrupted) {
  const auto a = (tmp_ / "a.mapper.pt").string();
  ASSERT_EQ(train(a, {"--steps", "20", "--ckpt-every", "5"}).code, 0);
  const auto b = (tmp_ / "b.mapper.pt").string();
  auto r = train(b, {"--steps", "20", "--ckpt-every", "5", "--max-steps", "8"});
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_NE(r.err.find("stopped at step 8 of 20"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(b));
  r = train(b, {"--steps", "20", "--ckpt-every", "5", "--resume"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming at step 8 of 20"), std::string::npos) << r.err;
  const auto ma = load_mapper(a, 8, 32);
  const auto mb = load_mapper(b, 8, 32);
  const auto pa = ma.mapper->named_parameters();
  const auto pb = mb.mapper->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  EXPECT_EQ(ma.meta["history"], mb.meta["history"]);
}

TEST_F(MapperTrainCli, BadInputs) {
  const auto out = (tmp_ / "x.mapper.pt").string();
  auto r = styleclip({"mapper", "train", "--models", test::testdata("tiny").string(), "--text", "x",
                      "--out", out});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("give exactly one of --latents FILE"), std::string::npos) << r.err;
  save_tensor_pt(tmp_ / "wide.pt", torch::zeros({4, 8, 33}));
  r = styleclip({"mapper", "train", "--models", test::testdata("tiny").string(), "--text", "x",
                 "--latents", (tmp_ / "wide.pt").string(), "--out", out});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("has shape [4, 8, 33]"), std::string::npos) << r.err;
  r = styleclip({"mapper", "train", "--models", test::testdata("tiny").string(), "--sample", "4",
                 "--out", out});
  EXPECT_EQ(r.code, 2);  // --text is required
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace styleclip

namespace styleclip {
namespace {

// Ctrl-C during training: the run checkpoints, says how to continue, and exits with 130.
TEST_F(MapperTrainCli, InterruptSavesACheckpointAndExits130) {
  const auto out = (tmp_ / "int.mapper.pt").string();
  const std::vector<std::string> args = {STYLECLIP_BINARY,
                                         "mapper",
                                         "train",
                                         "--models",
                                         test::testdata("tiny").string(),
                                         "--text",
                                         "purple hair",
                                         "--sample",
                                         "8",
                                         "--optimizer",
                                         "adam",
                                         "--steps",
                                         "100000",
                                         "--ckpt-every",
                                         "1",
                                         "--out",
                                         out};
  const auto err_path = tmp_ / "stderr";
  const int pid = test::start_program(args, tmp_ / "stdout", err_path);
  // Wait for the first checkpoint (training is under way), then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(out + ".ckpt/state.json") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_program(pid), 130) << "killed by a signal instead of exiting 130";
  const auto err = test::read_text(err_path);
  EXPECT_NE(err.find("continue with --resume"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(out)) << "no final mapper from an interrupted run";
  const auto state = json::parse(test::read_text(out + ".ckpt/state.json"));
  EXPECT_GE(state["step"].get<int>(), 1);
  EXPECT_NO_THROW((void)load_mapper(out + ".ckpt/mapper.pt", 8, 32));
}

}  // namespace
}  // namespace styleclip
