// tests/unit/test_tokenizer.cpp — styleclip::Tokenizer against OpenAI's `clip/simple_tokenizer.py`.
//
// Parity: every case in ../shared/fixtures/clip-tokenizer/cases.json (ids, context-77 ids,
// truncation, decode) computed by the reference with the real vocabulary; those tests skip when
// the fixtures are absent. Cleaning expectations were computed with CPython 3.11's html.unescape,
// unicodedata NFC, the `regex` module's \s and str.lower (the reference minus ftfy). The BPE rules,
// properties and error paths use small merges files written into each test's own temp directory.

#include <styleclip/error.h>
#include <styleclip/models/tokenizer.h>

#include <gtest/gtest.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef STYLECLIP_FIXTURES_DIR
#define STYLECLIP_FIXTURES_DIR ""
#endif

namespace styleclip {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

fs::path fixtures_dir() { return fs::path(STYLECLIP_FIXTURES_DIR) / "clip-tokenizer"; }
fs::path openai_vocab() { return fixtures_dir() / "bpe_simple_vocab_16e6.txt.gz"; }

/// A fresh directory per test, removed afterwards (tests may run in parallel).
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string test = info != nullptr
                                 ? std::string(info->test_suite_name()) + "." + info->name()
                                 : std::string("tokenizer");
    std::random_device random;
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("styleclip-" + test + "-" + std::to_string(random()) +
                                         "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

void write_gzip(const fs::path& path, std::string_view contents) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << "cannot write " << path;
  if (!contents.empty()) {
    ASSERT_EQ(gzwrite(file, contents.data(), static_cast<unsigned>(contents.size())),
              static_cast<int>(contents.size()));
  }
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(fs::file_size(path)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

/// Runs `fn` and returns the styleclip::Error it throws; fails the test if it throws nothing.
template <typename Fn>
Error expect_error(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a styleclip::Error";
  return Error(ExitCode::kOk, "");
}

// Byte-level vocabulary ids, computed as the reference does: the 256 byte symbols sorted by code
// point ('!' = 0 ... 'ÿ' = 187, then U+0100 = byte 0x00 at 188 ...), then the same with "</w>".
constexpr int64_t kIdOfA = 'a' - '!';  // "a"
constexpr int64_t kEndOfWord = 256;    // add to a symbol's id for its "</w>" form

// ------------------------------------------------------------------------------------------------
// With OpenAI's vocabulary (skipped when the fixtures are absent)

class OpenAiTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(openai_vocab())) tokenizer_ = std::make_unique<Tokenizer>(openai_vocab());
  }
  static void TearDownTestSuite() { tokenizer_.reset(); }
  void SetUp() override {
    if (!tokenizer_) {
      GTEST_SKIP() << "reference fixtures not found at '" << fixtures_dir().string()
                   << "' (STYLECLIP_FIXTURES_DIR); skipping parity tests";
    }
  }
  static const Tokenizer& tok() { return *tokenizer_; }

 private:
  static inline std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(OpenAiTokenizerTest, VocabularyLayoutMatchesReference) {
  EXPECT_EQ(tok().vocab_size(), 49408);
  EXPECT_EQ(tok().start_token(), 49406);
  EXPECT_EQ(tok().end_token(), 49407);
  EXPECT_EQ(tok().token_string(0), "!");
  EXPECT_EQ(tok().token_string(188), "\304\200");  // U+0100 stands for byte 0x00
  EXPECT_EQ(tok().token_string(256), "!</w>");
  EXPECT_EQ(tok().token_string(512), "in");  // the first merge, "i n"
  EXPECT_EQ(tok().token_string(49406), "<|startoftext|>");
  EXPECT_EQ(tok().token_string(49407), "<|endoftext|>");
}

TEST_F(OpenAiTokenizerTest, MatchesEveryReferenceCase) {
  std::ifstream in(fixtures_dir() / "cases.json");
  ASSERT_TRUE(in.good()) << "cannot read cases.json";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_TRUE(cases.is_array());
  ASSERT_FALSE(cases.empty());
  int checked = 0;
  for (const auto& c : cases) {
    const auto text = c.at("text").get<std::string>();
    SCOPED_TRACE("text: '" + text + "'");
    const auto bpe = c.at("bpe").get<Ids>();
    EXPECT_EQ(tok().encode(text), bpe);
    const Tokenizer::Tokens tokens = tok().tokenize(text, 77);
    EXPECT_EQ(tokens.ids, c.at("context77").get<Ids>());
    EXPECT_EQ(tokens.truncated, !c.at("fits77").get<bool>());
    EXPECT_EQ(tok().decode(bpe), c.at("decoded").get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(cases.size()));
}

TEST_F(OpenAiTokenizerTest, KnownVectors) {
  // The texts of fixtures/clip-openai/tiny.json and a prompt from the StyleCLIP paper.
  const std::vector<std::pair<std::string, Ids>> vectors = {
      {"a person with purple hair", {49406, 320, 2533, 593, 5496, 2225, 49407}},
      {"a face with blonde hair", {49406, 320, 1710, 593, 10711, 2225, 49407}},
      {"an angry face", {49406, 550, 9054, 1710, 49407}},
      {"a photo of a cat.", {49406, 320, 1125, 539, 320, 2368, 269, 49407}},
      {"caf\303\251 \303\274n\303\257code", {49406, 15304, 6522, 77, 35689, 3217, 49407}},
      {"mohawk hairstyle", {49406, 34942, 22324, 49407}},
      {"", {49406, 49407}},
  };
  for (const auto& [text, expected] : vectors) {
    SCOPED_TRACE("text: '" + text + "'");
    const Tokenizer::Tokens tokens = tok().tokenize(text);
    ASSERT_EQ(tokens.ids.size(), 77u);
    EXPECT_FALSE(tokens.truncated);
    EXPECT_EQ(Ids(tokens.ids.begin(), tokens.ids.begin() + static_cast<long>(expected.size())),
              expected);
    EXPECT_TRUE(std::all_of(tokens.ids.begin() + static_cast<long>(expected.size()),
                            tokens.ids.end(), [](int64_t id) { return id == 0; }));
  }
}

TEST_F(OpenAiTokenizerTest, SpecialTokensInTextMapToTheirIds) {
  EXPECT_EQ(tok().encode("<|startoftext|>"), Ids({49406}));
  EXPECT_EQ(tok().encode("<|ENDOFTEXT|>"), Ids({49407}));  // lower-cased first
  EXPECT_EQ(tok().encode("<|startoftext|>x<|endoftext|>"), Ids({49406, 343, 49407}));
}

TEST_F(OpenAiTokenizerTest, TruncatesExactlyAtTheContextLength) {
  // "a" is one token, so n words give n + 2 ids with start and end.
  const auto words = [](int n) {
    std::string text;
    for (int i = 0; i < n; ++i) text += "a ";
    return text;
  };
  const Tokenizer::Tokens fits = tok().tokenize(words(75));
  EXPECT_FALSE(fits.truncated);
  ASSERT_EQ(fits.ids.size(), 77u);
  EXPECT_EQ(fits.ids[75], 320);
  EXPECT_EQ(fits.ids[76], 49407);

  const Tokenizer::Tokens cut = tok().tokenize(words(76));
  EXPECT_TRUE(cut.truncated);
  ASSERT_EQ(cut.ids.size(), 77u);
  EXPECT_EQ(cut.ids[0], 49406);
  EXPECT_EQ(cut.ids[75], 320);
  EXPECT_EQ(cut.ids[76], 49407);

  const Tokenizer::Tokens small = tok().tokenize("a person with purple hair", 4);
  EXPECT_TRUE(small.truncated);
  EXPECT_EQ(small.ids, Ids({49406, 320, 2533, 49407}));
  EXPECT_THROW((void)tok().tokenize("a", 1), std::invalid_argument);
}

TEST_F(OpenAiTokenizerTest, RejectsInvalidUtf8WithAClearMessage) {
  const Error e = expect_error([] { (void)tok().encode("ab\303"); });
  EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
  EXPECT_STREQ(e.what(), "text is not valid UTF-8: ill-formed sequence '\\xc3' at byte 2");
  // Surrogates, overlongs, values above U+10FFFF and stray continuation bytes.
  for (const std::string bad : {"\355\240\200", "\300\257", "\364\220\200\200", "x\200y"}) {
    const Error err = expect_error([&] { (void)tok().tokenize(bad); });
    EXPECT_EQ(err.code(), ExitCode::kInputUnusable);
    EXPECT_EQ(std::string(err.what()).rfind("text is not valid UTF-8: ", 0), 0u) << err.what();
  }
}

TEST_F(OpenAiTokenizerTest, DecodeFollowsTheReference) {
  // Byte 0xC3 alone is an incomplete sequence: one U+FFFD; with "</w>" a space follows.
  const int64_t byte_c3 = 106 + (0xC3 - 0xAE);
  EXPECT_EQ(tok().decode({byte_c3}), "\357\277\275");
  EXPECT_EQ(tok().decode({byte_c3 + kEndOfWord}), "\357\277\275 ");
  // "</w>" spelled with four single-byte tokens is replaced too, as in the reference.
  EXPECT_EQ(tok().decode({'<' - '!', '/' - '!', 'w' - '!', '>' - '!'}), " ");
  EXPECT_EQ(tok().decode({49406, 320, 49407}), "<|startoftext|>a <|endoftext|>");
  EXPECT_EQ(tok().decode({}), "");

  const Error e = expect_error([] { (void)tok().decode({320, 49408}); });
  EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
  EXPECT_STREQ(e.what(), "invalid token id '49408': outside the vocabulary of 49408 tokens");
  EXPECT_THROW((void)tok().decode({-1}), Error);
}

TEST_F(OpenAiTokenizerTest, RandomBytesNeverCrash) {
  std::mt19937 rng(20240527);
  std::uniform_int_distribution<int> length(0, 48);
  std::uniform_int_distribution<int> any_byte(0, 255);
  std::uniform_int_distribution<int> ascii(0x20, 0x7E);
  std::uniform_int_distribution<int> kind(0, 3);
  int rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    const int n = length(rng);
    for (int i = 0; i < n; ++i) {
      // Mostly ASCII with some raw bytes, so that valid multi-byte sequences occur as well.
      text.push_back(static_cast<char>(kind(rng) == 0 ? any_byte(rng) : ascii(rng)));
    }
    try {
      const Tokenizer::Tokens tokens = tok().tokenize(text);
      ASSERT_EQ(tokens.ids.size(), 77u);
      for (int64_t id : tokens.ids) ASSERT_TRUE(id >= 0 && id < tok().vocab_size()) << id;
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ExitCode::kInputUnusable) << e.what();
      ASSERT_EQ(std::string(e.what()).rfind("text is not valid UTF-8: ", 0), 0u) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);  // the generator did produce invalid UTF-8

  // Random valid code points (any plane, controls included) always tokenize, and random ids
  // always decode to valid UTF-8 (clean_text would reject anything else).
  std::uniform_int_distribution<uint32_t> code_point(0, 0x10FFFF);
  for (int round = 0; round < 500; ++round) {
    std::u32string chars;
    for (int i = 0; i < 12; ++i) {
      uint32_t c = code_point(rng);
      if (c >= 0xD800 && c <= 0xDFFF) c = 0x20;
      chars.push_back(c);
    }
    std::string text;
    for (char32_t c : chars) {
      if (c < 0x80) {
        text.push_back(static_cast<char>(c));
      } else if (c < 0x800) {
        text.push_back(static_cast<char>(0xC0 | (c >> 6)));
        text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      } else if (c < 0x10000) {
        text.push_back(static_cast<char>(0xE0 | (c >> 12)));
        text.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      } else {
        text.push_back(static_cast<char>(0xF0 | (c >> 18)));
        text.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        text.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    Ids ids;
    ASSERT_NO_THROW(ids = tok().encode(text));
    for (int64_t id : ids) ASSERT_TRUE(id >= 0 && id < tok().vocab_size()) << id;
    std::uniform_int_distribution<int64_t> any_id(0, tok().vocab_size() - 1);
    Ids random_ids(8);
    for (auto& id : random_ids) id = any_id(rng);
    ASSERT_NO_THROW((void)Tokenizer::clean_text(tok().decode(random_ids)));
  }
}

TEST_F(OpenAiTokenizerTest, AsciiRoundTripsUpToWhitespaceAndCase) {
  // '&' is left out: html.unescape legitimately changes text such as "&lt".
  const std::string alphabet =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%'()*+,-./"
      ":;<=>?@[\\]^_`{|}~";
  const std::string spaces[] = {" ", "  ", "\t", "\n", " \r\n "};
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> letter(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> word_length(1, 14);
  std::uniform_int_distribution<int> word_count(1, 10);
  std::uniform_int_distribution<std::size_t> space(0, std::size(spaces) - 1);
  const auto squeeze = [](std::string s, bool lower) {
    s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }),
            s.end());
    if (lower) {
      std::transform(s.begin(), s.end(), s.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
    return s;
  };
  for (int round = 0; round < 500; ++round) {
    std::string text = spaces[space(rng)];
    for (int w = word_count(rng); w > 0; --w) {
      for (int i = word_length(rng); i > 0; --i) text.push_back(alphabet[letter(rng)]);
      text += spaces[space(rng)];
    }
    SCOPED_TRACE("text: '" + text + "'");
    const std::string decoded = tok().decode(tok().encode(text));
    EXPECT_EQ(squeeze(decoded, false), squeeze(text, true));
  }
}

TEST_F(OpenAiTokenizerTest, IsSafeToShareBetweenThreads) {
  const std::vector<std::string> texts = {"a person with purple hair", "mohawk hairstyle",
                                          "the quick brown fox jumps over the lazy dog",
                                          "supercalifragilisticexpialidocious",
                                          "caf\303\251 na\303\257ve r\303\251sum\303\251"};
  std::vector<Ids> expected;
  for (const auto& text : texts) expected.push_back(tok().encode(text));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) {
        const std::size_t i = static_cast<std::size_t>(round + t) % texts.size();
        // Fresh words each round exercise cache inserts concurrently with lookups.
        (void)tok().encode("word" + std::to_string(t * 1000 + round));
        if (tok().encode(texts[i]) != expected[i]) ++mismatches;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ------------------------------------------------------------------------------------------------
// Cleaning (no vocabulary needed)

TEST(TokenizerCleanText, MatchesPythonCleaningChain) {
  struct Case {
    const char* text;
    const char* expected;
  };
  // Expected values from CPython 3.11 (html.unescape twice, NFC, regex \s, str.strip, str.lower).
  const Case cases[] = {
      {"&amp;amp;", "&"},                                          // unescaped twice
      {"&#39;&#x27;&#X27", "'''"},                                 // decimal, hex, no ';'
      {"a&#0;b", "a\357\277\275b"},                                // NUL → U+FFFD
      {"&#128;&#x81;&#150;", "\342\202\254\302\201\342\200\223"},  // C1 read as Windows-1252
      {"a&#1;b&#x7f;c", "abc"},                                    // control characters dropped
      {"&#xD800;&#99999999999999999999;&#x110000;",
       "\357\277\275\357\277\275\357\277\275"},    // surrogate, huge, above U+10FFFF → U+FFFD
      {"a&#xFFFE;b&#xFDD0;c&#x10FFFF;d", "abcd"},  // noncharacters dropped
      {"a&#13;b", "a b"},                          // CR kept, then collapsed
      {"&ampx &notin; &notit; &Eacute &unknown; &#x; & &&amp; AT&T &lt;b&gt;",
       "&x \342\210\211 \302\254it; \303\251 &unknown; &#x; & && at&t <b>"},  // longest prefix
      {"&amp&lt&gt&quot&apos; &apos", "&<>\"' &apos"},  // legacy names need no ';' ("apos" does)
      {"&#x1F600;&#128512", "\360\237\230\200\360\237\230\200"},  // astral code points
      {"&SmallCircle;&NotNestedGreaterGreater;&fjlig;",
       "\342\210\230\342\252\242\314\270fj"},  // HTML5-only names, two-code-point values
      {"&abcdefghijklmnopqrstuvwxyzabcdefghij;",
       "&abcdefghijklmnopqrstuvwxyzabcdefghij;"},         // over 32 characters: no reference
      {"&#65&#66;&#x43x", "abcx"},                        // adjacent references
      {"&am;p", "&am;p"},                                 // unknown name
      {"&nbsp;x&nbsp;", "x"},                             // NBSP is whitespace
      {"\034 a \034", "a"},                               // str.strip removes U+001C ...
      {"a\034b", "a\034b"},                               // ... but regex \s does not match it
      {"a\342\200\250\343\200\200\302\205\013b", "a b"},  // U+2028, U+3000, U+0085, VT
      {"e\314\201 \342\204\246", "\303\251 \317\211"},    // NFC: é, Ohm sign → omega
      {"\304\260stanbul \316\237\316\224\316\237\316\243 \341\272\236",
       "i\314\207stanbul \316\277\316\264\316\277\317\202 \303\237"},  // full case mapping, final ς
      {"  lots   of \t whitespace \n here  ", "lots of whitespace here"},
      {"", ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Tokenizer::clean_text(c.text), c.expected) << "text: '" << c.text << "'";
  }
}

TEST(TokenizerCleanText, RejectsInvalidUtf8) {
  const Error e = expect_error([] { (void)Tokenizer::clean_text("ok \377"); });
  EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
  EXPECT_STREQ(e.what(), "text is not valid UTF-8: ill-formed sequence '\\xff' at byte 3");
  const Error surrogate = expect_error([] { (void)Tokenizer::clean_text("\355\240\200"); });
  EXPECT_STREQ(surrogate.what(), "text is not valid UTF-8: ill-formed sequence '\\xed' at byte 0");
}

// ------------------------------------------------------------------------------------------------
// BPE rules on small merges files

class TokenizerSmallVocabTest : public ::testing::Test {
 protected:
  /// A tokenizer over `merges` (without the header line).
  Tokenizer make(const std::string& merges, int max_merges = 48894) {
    const fs::path path = dir_.path() / ("merges" + std::to_string(files_++) + ".txt.gz");
    write_gzip(path, "#version: 0.2\n" + merges);
    return Tokenizer(path, max_merges);
  }
  static int64_t id(char c) { return c - '!'; }
  TempDir dir_;
  int files_ = 0;
};

TEST_F(TokenizerSmallVocabTest, AppliesMergesByRank) {
  const Tokenizer bc_first = make("b c\na b\n");  // ids 512 "bc", 513 "ab"
  EXPECT_EQ(bc_first.vocab_size(), 516);
  EXPECT_EQ(bc_first.encode("abcd"), Ids({id('a'), 512, id('d') + kEndOfWord}));
  const Tokenizer ab_first = make("a b\nb c\n");  // ids 512 "ab", 513 "bc"
  EXPECT_EQ(ab_first.encode("abcd"), Ids({512, id('c'), id('d') + kEndOfWord}));
}

TEST_F(TokenizerSmallVocabTest, MergesAllOccurrencesLeftToRight) {
  const Tokenizer tok = make("a a\naa aa\nh e\nl l\nhe ll\nhell o</w>\n");
  // "aaaa" → a a a a</w> → aa a a</w> (non-overlapping) → no rule for (aa, a) or (a, a</w>).
  EXPECT_EQ(tok.encode("aaaa"), Ids({512, kIdOfA, kIdOfA + kEndOfWord}));
  // "aaaaa" → aa aa a</w> → aaaa a</w>.
  EXPECT_EQ(tok.encode("aaaaa"), Ids({513, kIdOfA + kEndOfWord}));
  EXPECT_EQ(tok.encode("hello"), Ids({517}));  // h e → l l → he ll → hell o</w>
  EXPECT_EQ(tok.decode(tok.encode("Hello AAAAA")), "hello aaaaa ");
  EXPECT_EQ(tok.token_string(517), "hello</w>");
}

TEST_F(TokenizerSmallVocabTest, RepeatedMergeKeepsItsLastRankAndId) {
  // dict(zip(...)) in the reference: the later line wins for both the rank and the id.
  const Tokenizer tok = make("a b\nx y\na b\n");
  EXPECT_EQ(tok.vocab_size(), 517);
  EXPECT_EQ(tok.encode("ab"), Ids({id('a'), id('b') + kEndOfWord}));  // "b</w>" is not "b"
  EXPECT_EQ(tok.encode("abc"), Ids({514, id('c') + kEndOfWord}));
}

TEST_F(TokenizerSmallVocabTest, HonoursMaxMerges) {
  const Tokenizer tok = make("a b\nab c\n", 1);
  EXPECT_EQ(tok.vocab_size(), 515);
  EXPECT_EQ(tok.start_token(), 513);
  EXPECT_EQ(tok.end_token(), 514);
  EXPECT_EQ(tok.encode("abcd"), Ids({512, id('c'), id('d') + kEndOfWord}));
  EXPECT_EQ(make("a b\nab c\n").encode("abcd"), Ids({513, id('d') + kEndOfWord}));
  EXPECT_THROW((void)make("a b\n", 0), std::invalid_argument);
}

TEST_F(TokenizerSmallVocabTest, IsMovable) {
  Tokenizer first = make("a b\n");
  Tokenizer second = std::move(first);
  EXPECT_EQ(second.encode("ab ab"),
            Ids({id('a'), id('b') + kEndOfWord, id('a'), id('b') + kEndOfWord}));
}

// ------------------------------------------------------------------------------------------------
// Bad vocabulary files

class TokenizerFileErrorTest : public ::testing::Test {
 protected:
  /// The message of the bundle error that loading `path` raises.
  static std::string load_error(const fs::path& path) {
    const Error e = expect_error([&] { Tokenizer tok(path); });
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid) << e.what();
    return e.what();
  }
  static std::string prefix(const fs::path& path) {
    return "cannot read vocabulary '" + path.string() + "': ";
  }
  TempDir dir_;
};

TEST_F(TokenizerFileErrorTest, MissingFile) {
  const fs::path path = dir_.path() / "absent.txt.gz";
  EXPECT_EQ(load_error(path), prefix(path) + "file does not exist");
}

TEST_F(TokenizerFileErrorTest, Directory) {
  EXPECT_EQ(load_error(dir_.path()), prefix(dir_.path()) + "is a directory, expected a file");
}

TEST_F(TokenizerFileErrorTest, NotGzip) {
  const fs::path path = dir_.path() / "plain.txt.gz";
  write_file(path, "#version: 0.2\na b\n");
  EXPECT_EQ(load_error(path), prefix(path) + "not a gzip file");
}

TEST_F(TokenizerFileErrorTest, EmptyFiles) {
  const fs::path zero_bytes = dir_.path() / "zero.txt.gz";
  write_file(zero_bytes, "");
  EXPECT_EQ(load_error(zero_bytes), prefix(zero_bytes) + "file is empty");
  const fs::path empty_gzip = dir_.path() / "empty.txt.gz";
  write_gzip(empty_gzip, "");
  EXPECT_EQ(load_error(empty_gzip), prefix(empty_gzip) + "file is empty once decompressed");
  const fs::path header_only = dir_.path() / "header.txt.gz";
  write_gzip(header_only, "#version: 0.2\n");
  EXPECT_EQ(load_error(header_only), prefix(header_only) + "no merges after the header line");
}

TEST_F(TokenizerFileErrorTest, TruncatedOrCorruptGzip) {
  const fs::path whole = dir_.path() / "whole.txt.gz";
  std::string merges = "#version: 0.2\n";
  for (int i = 0; i < 2000; ++i) merges += "a b\n";
  write_gzip(whole, merges);
  const std::string bytes = read_file(whole);
  ASSERT_GT(bytes.size(), 20u);

  const fs::path truncated = dir_.path() / "truncated.txt.gz";
  write_file(truncated, bytes.substr(0, bytes.size() - 6));
  EXPECT_EQ(load_error(truncated), prefix(truncated) + "gzip data is truncated");

  const fs::path corrupt = dir_.path() / "corrupt.txt.gz";
  std::string damaged = bytes;
  damaged[3] = static_cast<char>(0xE0);  // reserved header flag bits
  write_file(corrupt, damaged);
  EXPECT_EQ(load_error(corrupt).rfind(prefix(corrupt) + "gzip data is corrupt (", 0), 0u);
}

TEST_F(TokenizerFileErrorTest, MalformedLines) {
  const fs::path three = dir_.path() / "three.txt.gz";
  write_gzip(three, "#version: 0.2\na b\na b c\n");
  EXPECT_EQ(load_error(three), prefix(three) + "line 3 'a b c' is not a merge of two symbols");
  const fs::path blank = dir_.path() / "blank.txt.gz";
  write_gzip(blank, "#version: 0.2\na b\n\nc d\n");
  EXPECT_EQ(load_error(blank), prefix(blank) + "line 3 '' is not a merge of two symbols");
  const fs::path alphabet = dir_.path() / "alphabet.txt.gz";
  write_gzip(alphabet, "#version: 0.2\na \343\201\202\n");  // U+3042 is not a byte symbol
  EXPECT_EQ(load_error(alphabet),
            prefix(alphabet) + "line 2 'a \343\201\202' has characters outside the byte alphabet");
  const fs::path latin1 = dir_.path() / "latin1.txt.gz";
  write_gzip(latin1, "#version: 0.2\na \351\n");
  EXPECT_EQ(load_error(latin1),
            prefix(latin1) + "not UTF-8 text: ill-formed sequence '\\xe9' at byte 16");
}

}  // namespace
}  // namespace styleclip
