// End-to-end: `styleclip latents pack` gathers latent files and folders into one training file,
// and `mapper train --latents` trains on it (and on several files and folders).
#include <styleclip/engines/mapper.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::styleclip;

class LatentsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_BUNDLE("tiny");
    // A folder as `generate` leaves it: latents, images and sidecars side by side.
    test::run_ok({"generate", "--models", tiny_, "--seed", "0-2"}, gen_,
                 {"seed0000.latent.pt", "seed0002.latent.pt"});
    const auto info = Bundle::open(tiny_).generator();
    two_rows_ = torch::randn({2, info.num_ws, info.w_dim});
    save_tensor_pt(tmp_ / "two.pt", two_rows_);
  }
  std::vector<std::string> pack(const std::vector<std::string>& inputs, const fs::path& out) {
    std::vector<std::string> args = {"latents", "pack", "--models", tiny_, "--out", out.string()};
    args.insert(args.end(), inputs.begin(), inputs.end());
    return args;
  }
  test::TempDir tmp_;
  std::string tiny_ = test::testdata("tiny").string();
  fs::path gen_ = tmp_ / "generated";
  torch::Tensor two_rows_;
};

TEST_F(LatentsCli, PacksFoldersAndFilesInOrderAndListsWhatItCouldNotRead) {
  std::ofstream(gen_ / "broken.latent.pt") << "not a latent";
  const auto out = tmp_ / "data" / "train.pt";
  auto r = styleclip(pack({gen_.string(), (tmp_ / "two.pt").string(), "--json"}, out));
  EXPECT_EQ(r.code, 1) << r.err;  // one file could not be read: listed, the rest packed
  const auto j = json::parse(r.out);
  EXPECT_EQ(j["rows"], 5);
  EXPECT_EQ(j["files"], 4);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_NE(r.err.find("broken.latent.pt"), std::string::npos) << r.err;
  const auto packed = read_tensor_file(out);
  ASSERT_EQ(packed.size(0), 5);
  // Sorted: the three seeds of the folder (the images and sidecars beside them are not latents),
  // then the two rows of the file.
  for (int i = 0; i < 3; ++i) {
    const auto seed = read_tensor_file(gen_ / ("seed000" + std::to_string(i) + ".latent.pt"));
    EXPECT_TRUE(torch::equal(packed[i], seed[0])) << i;
  }
  EXPECT_TRUE(torch::equal(packed.slice(0, 3), two_rows_));
  const auto side = json::parse(test::read_text(tmp_ / "data" / "train.json"));
  EXPECT_EQ(side["command"], "latents pack");
  EXPECT_EQ(side["rows"], 5);
  ASSERT_EQ(side["sources"].size(), 4u);
  EXPECT_EQ(side["sources"][3]["file"], fs::absolute(tmp_ / "two.pt").string());
  EXPECT_EQ(side["sources"][3]["first"], 3);
  EXPECT_EQ(side["sources"][3]["rows"], 2);
  ASSERT_EQ(side["failed"].size(), 1u);
  EXPECT_EQ(side["failed"][0]["file"], fs::absolute(gen_ / "broken.latent.pt").string());
  EXPECT_EQ(side["generator_sha256"], Bundle::open(tiny_).sha256("generator"));
}

TEST_F(LatentsCli, BadInputsWriteNothing) {
  const auto out = tmp_ / "x.pt";
  std::ofstream(tmp_ / "broken.pt") << "not a latent";
  auto r = styleclip(pack({(tmp_ / "broken.pt").string()}, out));
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("broken.pt"), std::string::npos) << r.err;
  r = styleclip(pack({(tmp_ / "two.pt").string()}, tmp_ / "x.bin"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(
      r.err.find("invalid --out '" + (tmp_ / "x.bin").string() + "': name the .pt file to write"),
      std::string::npos)
      << r.err;
  r = styleclip(pack({(tmp_ / "missing").string()}, out));
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("missing': file does not exist"), std::string::npos) << r.err;
  r = styleclip(
      pack({tmp_.path().string(), "--glob", "*.png"}, out));  // a folder with no such file
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(tmp_ / "x.json"));
}

TEST_F(LatentsCli, APackTrainsAMapperAndSoDoSeveralFilesAndFolders) {
  const auto data = tmp_ / "train.pt";
  ASSERT_EQ(styleclip(pack({gen_.string(), (tmp_ / "two.pt").string()}, data)).code, 0);
  const std::vector<std::string> train = {"mapper",      "train",   "--models", tiny_,     "--text",
                                          "a red shape", "--steps", "2",        "--batch", "2"};
  auto args = train;
  args.insert(args.end(), {"--latents", data.string(), "--out", (tmp_ / "a.mapper.pt").string()});
  auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto info = Bundle::open(tiny_).generator();
  const auto a = load_mapper(tmp_ / "a.mapper.pt", info.num_ws, info.w_dim, torch::kCPU);
  const auto& src = a.meta["run"]["data"]["latents"];
  ASSERT_EQ(src.size(), 1u) << a.meta.dump();
  EXPECT_EQ(src[0]["rows"], 5);
  // The same data given as a folder and a file: the same rows in the same order, so the same
  // mapper.
  args = train;
  args.insert(args.end(), {"--latents", gen_.string(), (tmp_ / "two.pt").string(), "--out",
                           (tmp_ / "b.mapper.pt").string()});
  r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto b = load_mapper(tmp_ / "b.mapper.pt", info.num_ws, info.w_dim, torch::kCPU);
  EXPECT_EQ(b.meta["run"]["data"]["latents"].size(), 4u);
  const auto pb = b.mapper->named_parameters();
  for (const auto& item : a.mapper->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
  // A training set is all of what was asked for: an unreadable file stops it.
  std::ofstream(gen_ / "broken.latent.pt") << "not a latent";
  args = train;
  args.insert(args.end(), {"--latents", gen_.string(), "--out", (tmp_ / "c.mapper.pt").string()});
  r = styleclip(args);
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("broken.latent.pt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fix or leave out that file from --latents"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "c.mapper.pt"));
}

}  // namespace
}  // namespace styleclip
