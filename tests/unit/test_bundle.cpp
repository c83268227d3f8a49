// Bundle loading and validation: every way a bundle can be wrong gives a bundle error that names
// the file and what was expected.
#include <styleclip/error.h>
#include <styleclip/io/sha256.h>
#include <styleclip/io/verify_cache.h>
#include <styleclip/models/bundle.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

// Known answers from FIPS 180-2 Appendix B.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, CpuInstructionsAgreeWithThePortableCode) {
  if (!sha256_uses_cpu_instructions()) GTEST_SKIP() << "this CPU has no SHA instructions";
  // Every length around the 64-byte block and its 56-byte padding edge, then long inputs that
  // run many blocks through one call.
  std::string data;
  uint32_t x = 12345;
  for (int i = 0; i < 70000; ++i) {
    x = x * 1664525u + 1013904223u;
    data.push_back(static_cast<char>(x >> 24));
  }
  for (size_t n = 0; n <= 200; ++n) {
    ASSERT_EQ(sha256_hex(data.substr(0, n)), sha256_hex_portable(data.substr(0, n))) << n;
  }
  for (size_t n : {4095u, 4096u, 65537u, 70000u}) {
    ASSERT_EQ(sha256_hex(data.substr(0, n)), sha256_hex_portable(data.substr(0, n))) << n;
  }
  EXPECT_EQ(sha256_hex_portable("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FileMatchesString) {
  TempDir tmp;
  std::string data;
  for (int i = 0; i < 3000000; ++i) data.push_back(static_cast<char>(i * 7));
  test::write_text(tmp / "f", data);
  EXPECT_EQ(sha256_file(tmp / "f"), sha256_hex(data));
}

/// A copy of the tiny bundle whose manifest the test can break.
class BrokenBundle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::testdata("tiny") / "manifest.json")) GTEST_SKIP() << "no tiny bundle";
    dir_ = test::copy_testdata("tiny", tmp_ / "bundle");
    std::ifstream in(dir_ / "manifest.json");
    in >> manifest_;
  }
  void save() { test::write_text(dir_ / "manifest.json", manifest_.dump(2)); }
  std::string open_error(Bundle::Verify verify = Bundle::Verify::kChanged) {
    try {
      (void)Bundle::open(dir_, verify);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
      return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
  }
  TempDir tmp_;
  fs::path dir_;
  json manifest_;
};

TEST_F(BrokenBundle, IntactBundleOpens) {
  const auto b = Bundle::open(dir_);
  EXPECT_TRUE(b.has("generator"));
  EXPECT_EQ(b.generator().resolution, 32);
  EXPECT_EQ(b.generator().num_ws, 8);
  EXPECT_EQ(b.generator().style_dims.size(), 11u);
  EXPECT_EQ(b.sha256("generator"), sha256_file(dir_ / "generator.pt"));
}

TEST_F(BrokenBundle, MissingFolder) {
  fs::remove_all(dir_);
  EXPECT_NE(open_error().find("folder does not exist"), std::string::npos);
}

TEST_F(BrokenBundle, MissingManifest) {
  fs::remove(dir_ / "manifest.json");
  EXPECT_NE(open_error().find("no manifest.json"), std::string::npos);
}

TEST_F(BrokenBundle, CorruptManifest) {
  test::write_text(dir_ / "manifest.json", "{\"format\": \"styleclip-bundle\", ");
  EXPECT_NE(open_error().find("not valid JSON"), std::string::npos);
}

TEST_F(BrokenBundle, WrongFormatAndVersion) {
  manifest_["format"] = "something-else";
  save();
  EXPECT_NE(open_error().find("not a styleclip bundle"), std::string::npos);
  manifest_["format"] = "styleclip-bundle";
  manifest_["format_version"] = 99;
  save();
  EXPECT_NE(open_error().find("format_version 99 is not supported"), std::string::npos);
}

TEST_F(BrokenBundle, MissingFileNamesIt) {
  fs::remove(dir_ / "generator.pt");
  const auto m = open_error();
  EXPECT_NE(m.find("is missing 'generator.pt'"), std::string::npos) << m;
}

TEST_F(BrokenBundle, TruncatedFile) {
  fs::resize_file(dir_ / "generator.pt", 100);
  const auto m = open_error();
  EXPECT_NE(m.find("has 100 bytes, expected"), std::string::npos) << m;
}

TEST_F(BrokenBundle, ChecksumMismatch) {
  std::fstream f(dir_ / "generator.pt", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(1000);
  f.put('\x55');
  f.close();
  const auto m = open_error();
  EXPECT_NE(m.find("sha256"), std::string::npos) << m;
  EXPECT_NE(m.find("generator.pt"), std::string::npos) << m;
  EXPECT_NO_THROW((void)Bundle::open(dir_, Bundle::Verify::kNone));
}

TEST_F(BrokenBundle, IncoherentDimensions) {
  manifest_["generator"]["num_ws"] = 7;
  save();
  const auto m = open_error();
  EXPECT_NE(m.find("do not fit together"), std::string::npos) << m;
}

TEST_F(BrokenBundle, TheFamilySaysHowStyleLayersAreLaidOut) {
  // StyleGAN2 (no family field): the layout follows from the resolution.
  auto info = Bundle::open(dir_).generator();
  EXPECT_EQ(info.family, GeneratorFamily::kStyleGAN2);
  EXPECT_EQ(info.style_resolutions, (std::vector<int>{4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32}));
  EXPECT_EQ(info.style_is_input, std::vector<bool>(11, false));
  EXPECT_FALSE(info.style_is_channel(1));  // to_rgb1
  EXPECT_TRUE(info.style_is_channel(2));
  // StyleGAN3: one style entry per W+ row, the input transform first and ToRGB last.
  auto& g = manifest_["generator"];
  g["family"] = "stylegan3";
  save();
  EXPECT_NE(open_error().find("field 'generator.style_is_input'"), std::string::npos);
  g["style_dims"] = {4, 32, 32, 32, 32, 16, 16, 16};
  g["style_is_rgb"] = {false, false, false, false, false, false, false, true};
  g["style_is_input"] = {true, false, false, false, false, false, false, false};
  g["style_resolutions"] = {36, 36, 36, 20, 20, 36, 32, 32};
  save();
  info = Bundle::open(dir_, Bundle::Verify::kNone).generator();
  EXPECT_EQ(info.family, GeneratorFamily::kStyleGAN3);
  EXPECT_FALSE(info.style_is_channel(0));
  EXPECT_TRUE(info.style_is_channel(6));
  EXPECT_FALSE(info.style_is_channel(7));
  EXPECT_EQ(info.style_resolutions[3], 20);
  // The input transform elsewhere than first, or entries that do not match num_ws: refused.
  g["style_is_input"] = {false, true, false, false, false, false, false, false};
  save();
  EXPECT_NE(open_error().find("do not fit together"), std::string::npos);
  g["style_is_input"] = {true, false, false, false, false, false, false, false};
  g["num_ws"] = 9;
  save();
  EXPECT_NE(open_error().find("do not fit together"), std::string::npos);
  g["family"] = "stylegan4";
  save();
  EXPECT_NE(open_error().find("field 'generator.family' is 'stylegan4', expected"),
            std::string::npos);
}

TEST_F(BrokenBundle, WrongFieldType) {
  manifest_["generator"]["w_dim"] = "wide";
  save();
  const auto m = open_error();
  EXPECT_NE(m.find("field 'generator.w_dim' has the wrong type"), std::string::npos) << m;
}

TEST_F(BrokenBundle, CountsMustBeWholeNumbersInRange) {
  // JSON libraries read true as 1 and 64.9 as 64; a manifest saying so is wrong, not rounded.
  const std::vector<std::pair<json, std::string>> cases = {
      {64.9, "field 'generator.resolution' must be a whole number (found 64.9)"},
      {true, "field 'generator.resolution' must be a whole number (found true)"},
      {int64_t{1} << 40, "field 'generator.resolution' is out of range"}};
  const json good = manifest_["generator"]["resolution"];
  for (const auto& [value, message] : cases) {
    manifest_["generator"]["resolution"] = value;
    save();
    const auto m = open_error();
    EXPECT_NE(m.find(message), std::string::npos) << m;
  }
  manifest_["generator"]["resolution"] = good;
  const json dims = manifest_["generator"]["style_dims"];
  manifest_["generator"]["style_dims"][0] = 64.9;
  save();
  EXPECT_NE(open_error().find("field 'generator.style_dims' must be a list of whole numbers"),
            std::string::npos);
  manifest_["generator"]["style_dims"] = dims;
  manifest_["format_version"] = 1.5;
  save();
  EXPECT_NE(open_error().find("field 'format_version' must be a whole number"), std::string::npos);
  manifest_["format_version"] = 1;
  manifest_["format"] = 5;  // not even a string: still the bundle's error, not a JSON exception
  save();
  EXPECT_NE(open_error().find("not a styleclip bundle"), std::string::npos);
}

TEST_F(BrokenBundle, FilePathsStayInsideTheBundle) {
  // A manifest must not make the loader hash and run files from elsewhere.
  fs::copy_file(dir_ / "generator.pt", tmp_ / "outside.pt");
  for (const std::string& path : {std::string("../outside.pt"), (tmp_ / "outside.pt").string(),
                                  std::string("a/../../outside.pt"), std::string("")}) {
    manifest_["files"]["generator"]["path"] = path;
    save();
    const auto m = open_error(Bundle::Verify::kNone);
    EXPECT_NE(m.find("files.generator.path '" + path + "' must be a path inside the bundle folder"),
              std::string::npos)
        << m;
  }
  // The writer keeps to the same rule: a file outside the bundle cannot be added to it.
  try {
    Bundle::add_part(dir_, "extra", tmp_ / "outside.pt", nullptr);
    ADD_FAILURE() << "add_part took a file outside the bundle";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(std::string(e.what()).find("must be inside the bundle folder"), std::string::npos)
        << e.what();
  }
  // A sub-folder inside the bundle is fine.
  fs::create_directories(dir_ / "sub");
  fs::rename(dir_ / "generator.pt", dir_ / "sub" / "generator.pt");
  manifest_["files"]["generator"]["path"] = "sub/generator.pt";
  save();
  EXPECT_NO_THROW((void)Bundle::open(dir_));
}

TEST_F(BrokenBundle, EveryFieldTheSchemaRequiresTheReaderRequires) {
  // docs/manifest.schema.json is the format's description for other tools (the exporters' tests
  // validate what they write against it); the reader must not accept less than it promises.
  std::ifstream in(fs::path(STYLECLIP_SOURCE_DIR) / "docs/manifest.schema.json");
  const json schema = json::parse(in);
  const json good = manifest_;
  const auto refused = [&](const std::string& what) {
    save();
    try {
      (void)Bundle::open(dir_, Bundle::Verify::kNone);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBundleInvalid) << what;
      return;
    }
    ADD_FAILURE() << "the reader accepts a manifest without " << what;
  };
  int checked = 0;
  for (const auto& key : schema.at("required")) {
    manifest_ = good;
    manifest_.erase(key.get<std::string>());
    refused(key.get<std::string>());
    ++checked;
  }
  for (const auto& key : schema.at("$defs").at("generator").at("required")) {
    manifest_ = good;
    manifest_["generator"].erase(key.get<std::string>());
    refused("generator." + key.get<std::string>());
    ++checked;
  }
  for (const auto& key : schema.at("$defs").at("file").at("required")) {
    manifest_ = good;
    manifest_["files"]["generator"].erase(key.get<std::string>());
    refused("files.generator." + key.get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 13);
}

TEST_F(BrokenBundle, ClassesAndSeedConvention) {
  // Bundles exported before NVIDIA pickles were read have neither field.
  manifest_["generator"].erase("c_dim");
  manifest_["generator"].erase("seed_convention");
  save();
  auto b = Bundle::open(dir_);
  EXPECT_EQ(b.generator().c_dim, 0);
  EXPECT_EQ(b.generator().seed_convention, SeedConvention::kTorch);
  manifest_["generator"]["c_dim"] = 5;
  manifest_["generator"]["seed_convention"] = "numpy-randomstate";
  save();
  b = Bundle::open(dir_);
  EXPECT_EQ(b.generator().c_dim, 5);
  EXPECT_EQ(b.generator().seed_convention, SeedConvention::kNumpyRandomState);
  manifest_["generator"]["seed_convention"] = "torch";
  save();
  EXPECT_EQ(Bundle::open(dir_).generator().seed_convention, SeedConvention::kTorch);

  manifest_["generator"]["seed_convention"] = "numpy";
  save();
  auto m = open_error();
  EXPECT_NE(m.find("field 'generator.seed_convention' is 'numpy', expected \"torch\" or "
                   "\"numpy-randomstate\""),
            std::string::npos)
      << m;
  manifest_["generator"]["seed_convention"] = "torch";
  manifest_["generator"]["c_dim"] = -1;
  save();
  m = open_error();
  EXPECT_NE(m.find("field 'generator.c_dim' must be 0 or more, found -1"), std::string::npos) << m;
  manifest_["generator"]["c_dim"] = "five";
  save();
  m = open_error();
  EXPECT_NE(m.find("field 'generator.c_dim' has the wrong type"), std::string::npos) << m;
}

TEST_F(BrokenBundle, AbsentPartIsAClearError) {
  manifest_["files"].erase("clip");
  manifest_.erase("clip");
  save();
  const auto b = Bundle::open(dir_);
  try {
    (void)b.clip();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no clip"), std::string::npos) << e.what();
  }
}

/// The checksum record (io/verify_cache.h) in a folder of the test's own.
class VerifiedBundle : public BrokenBundle {
 protected:
  void SetUp() override {
    BrokenBundle::SetUp();
    if (IsSkipped()) return;
    cache_ = tmp_ / "cache";
    ::setenv("STYLECLIP_CACHE_DIR", cache_.c_str(), 1);
  }
  void TearDown() override { ::unsetenv("STYLECLIP_CACHE_DIR"); }
  /// The copied files count as written just now; wait until they are past the racy margin.
  static void let_files_age() {
    std::this_thread::sleep_for(VerifyCache::kRacyMargin + std::chrono::milliseconds(200));
  }
  [[nodiscard]] int file_count() const { return static_cast<int>(manifest_["files"].size()); }
  fs::path cache_;
};

TEST_F(VerifiedBundle, UnchangedFilesAreHashedOnceThenTrusted) {
  let_files_age();
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  EXPECT_TRUE(fs::exists(cache_ / "verified-files.json"));
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), 0);
  // `info` asks for every file, record or not.
  EXPECT_EQ(Bundle::open(dir_, Bundle::Verify::kAll).files_hashed(), file_count());
  EXPECT_EQ(Bundle::open(dir_, Bundle::Verify::kNone).files_hashed(), 0);
}

TEST_F(VerifiedBundle, AFileWrittenAfterItWasRecordedIsHashedAgain) {
  let_files_age();
  ASSERT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  // Same size, one byte different, and its modification time put back: the status-change time
  // still moves, so the record no longer vouches for it.
  const auto p = dir_ / "generator.pt";
  const auto mtime = fs::last_write_time(p);
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    const char c = static_cast<char>(f.get());
    f.seekp(1000);
    f.put(static_cast<char>(c ^ 0x55));
  }
  fs::last_write_time(p, mtime);
  const auto m = open_error();
  EXPECT_NE(m.find("generator.pt' has sha256"), std::string::npos) << m;
}

TEST_F(VerifiedBundle, FilesWrittenJustNowAreNotRecorded) {
  // Within the racy margin a later write could leave every time unchanged (same tick).
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
}

TEST_F(VerifiedBundle, ADamagedOrUnwritableRecordOnlyCostsTime) {
  let_files_age();
  fs::create_directories(cache_);
  test::write_text(cache_ / "verified-files.json", "{\"" + (dir_ / "generator.pt").string());
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), 0);  // rewritten whole
  // A record for another sha256 (a manifest re-exported beside an unchanged file) is no proof.
  auto record = nlohmann::json::parse(test::read_text(cache_ / "verified-files.json"));
  const auto key = (dir_ / "generator.pt").lexically_normal().string();
  ASSERT_TRUE(record.contains(key)) << record.dump();
  record[key]["sha256"] = std::string(64, '0');
  test::write_text(cache_ / "verified-files.json", record.dump());
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), 1);
  // A cache folder that cannot be made: every open hashes, none fails.
  fs::remove_all(cache_);
  test::write_text(cache_, "a file where the folder should be");
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  EXPECT_EQ(Bundle::open(dir_).files_hashed(), file_count());
  ::setenv("STYLECLIP_CACHE_DIR", "off", 1);
  EXPECT_FALSE(VerifyCache::from_environment().enabled());
}

TEST(VerifyCacheEnvironment, FolderFromCacheDirThenXdgThenHome) {
  // Each variable is set back as it was, so that other tests in this process see the same.
  struct Saved {
    const char* name;
    std::optional<std::string> value;
  };
  std::vector<Saved> saved;
  for (const char* n : {"STYLECLIP_CACHE_DIR", "XDG_CACHE_HOME", "HOME"}) {
    const char* v = std::getenv(n);
    saved.push_back({n, v ? std::optional<std::string>(v) : std::nullopt});
  }
  ::setenv("STYLECLIP_CACHE_DIR", "/c", 1);
  ::setenv("XDG_CACHE_HOME", "/x", 1);
  ::setenv("HOME", "/h", 1);
  EXPECT_EQ(VerifyCache::from_environment().dir(), fs::path("/c"));
  ::setenv("STYLECLIP_CACHE_DIR", "", 1);
  EXPECT_FALSE(VerifyCache::from_environment().enabled());
  ::unsetenv("STYLECLIP_CACHE_DIR");
  EXPECT_EQ(VerifyCache::from_environment().dir(), fs::path("/x/styleclip"));
  ::setenv("XDG_CACHE_HOME", "relative", 1);  // the XDG spec says to ignore a relative path
  EXPECT_EQ(VerifyCache::from_environment().dir(), fs::path("/h/.cache/styleclip"));
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HOME");
  EXPECT_FALSE(VerifyCache::from_environment().enabled());
  for (const auto& s : saved) {
    if (s.value) {
      ::setenv(s.name, s.value->c_str(), 1);
    } else {
      ::unsetenv(s.name);
    }
  }
}

}  // namespace
}  // namespace styleclip
