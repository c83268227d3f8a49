// End-to-end: `styleclip tokenize` and `styleclip embed`.
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

using test::styleclip;

TEST(TokenizeCli, TextAndJsonFromVocabOrBundle) {
  SKIP_UNLESS_FIXTURE("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz");
  const auto vocab =
      (test::fixtures_dir() / "clip-tokenizer/bpe_simple_vocab_16e6.txt.gz").string();
  auto r =
      styleclip({"tokenize", "--vocab", vocab, "a person with purple hair", "mohawk hairstyle"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "49406 320 2533 593 5496 2225 49407\n49406 34942 22324 49407\n");
  std::string long_text;
  for (int i = 0; i < 90; ++i) long_text += "hair ";
  r = styleclip({"tokenize", "--vocab", vocab, "--json", "face with blue eyes", long_text});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto nl = r.out.find('\n');
  const auto first = json::parse(r.out.substr(0, nl));
  EXPECT_EQ(first["ids"].size(), 77u);
  EXPECT_EQ(first["ids"][4], 3095);
  EXPECT_FALSE(first["truncated"].get<bool>());
  const auto second = json::parse(r.out.substr(nl + 1));
  EXPECT_TRUE(second["truncated"].get<bool>());
  EXPECT_EQ(second["ids"][76], 49407);
  EXPECT_NE(r.err.find("is longer than 77 tokens"), std::string::npos) << r.err;
  SKIP_UNLESS_BUNDLE("clip_jit");
  r = styleclip({"tokenize", "--models", test::testdata("clip_jit").string(), "mohawk hairstyle"});
  EXPECT_EQ(r.out, "49406 34942 22324 49407\n");
}

TEST(TokenizeCli, BadVocabularyAndInvalidUtf8) {
  test::TempDir tmp;
  test::write_text(tmp / "v.txt.gz", "not gzip at all");
  auto r = styleclip({"tokenize", "--vocab", (tmp / "v.txt.gz").string(), "x"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find((tmp / "v.txt.gz").string()), std::string::npos) << r.err;
  r = styleclip({"tokenize", "--vocab", (tmp / "missing.gz").string(), "x"});
  EXPECT_EQ(r.code, 2) << r.err;  // CLI11's ExistingFile check: a usage error naming the option
  SKIP_UNLESS_FIXTURE("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz");
  r = styleclip({"tokenize", "--vocab",
                 (test::fixtures_dir() / "clip-tokenizer/bpe_simple_vocab_16e6.txt.gz").string(),
                 std::string("bad \xff\xfe bytes")});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_NE(r.err.find("not valid UTF-8"), std::string::npos) << r.err;
}

TEST(EmbedCli, TextsImagesAndCosines) {
  SKIP_UNLESS_BUNDLE("clip_jit");
  SKIP_UNLESS_FIXTURE("clip-openai/images/pattern_64x64.png");
  const auto img = (test::fixtures_dir() / "clip-openai/images/pattern_64x64.png").string();
  const auto r =
      styleclip({"embed", "--models", test::testdata("clip_jit").string(), "--text",
                 "a photo of a cat.", "--text", "an angry face", "--image", img, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  ASSERT_EQ(j["items"].size(), 3u);
  EXPECT_EQ(j["items"][2]["kind"], "image");
  EXPECT_EQ(j["items"][0]["embedding"].size(), 32u);
  EXPECT_NEAR(j["cosine"][1][1].get<double>(), 1.0, 1e-5);
  EXPECT_NEAR(j["cosine"][0][2].get<double>(), j["cosine"][2][0].get<double>(), 1e-6);
}

TEST(EmbedCli, UnreadableImageExitsFour) {
  SKIP_UNLESS_BUNDLE("clip_jit");
  test::TempDir tmp;
  test::write_text(tmp / "broken.png", "\x89PNG but not really");
  auto r = styleclip({"embed", "--models", test::testdata("clip_jit").string(), "--image",
                      (tmp / "broken.png").string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("cannot read image '" + (tmp / "broken.png").string() +
                       "': not an image OpenCV can decode"),
            std::string::npos)
      << r.err;
  test::write_text(tmp / "empty.png", "");
  r = styleclip({"embed", "--models", test::testdata("clip_jit").string(), "--image",
                 (tmp / "empty.png").string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("file is empty"), std::string::npos) << r.err;
  r = styleclip({"embed", "--models", test::testdata("clip_jit").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("nothing to embed"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace styleclip
