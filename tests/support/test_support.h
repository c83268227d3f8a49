// tests/support/test_support.h — temp dirs, tensor closeness, fixture paths, running the binary.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/types.h>

#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>

namespace styleclip::test {

/// ../shared/fixtures (or what CMake was told); tests that need it skip when it is absent.
std::filesystem::path fixtures_dir();
bool have_fixture(const std::string& relative);
/// Bundles made by the `make_test_bundles` CTest fixture.
std::filesystem::path testdata(const std::string& name);
/// A private copy of the test bundle `name` in `dir` (created), for tests that change or break it.
std::filesystem::path copy_testdata(const std::string& name, const std::filesystem::path& dir);

/// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

/// max |a − b| ≤ atol, with shapes equal; the message shows the worst difference.
::testing::AssertionResult tensors_close(const torch::Tensor& a, const torch::Tensor& b,
                                         double atol);

/// The value stored in a `torch.save` file (dict, list or tensor).
c10::IValue load_pt(const std::filesystem::path& path);
/// A tensor entry of a `torch.save`d dict.
torch::Tensor dict_tensor(const c10::IValue& dict, const std::string& key);

/// The tiny random bundle's generator, CLIP and identity model on the CPU, for engine tests;
/// skips when the bundle was not made or lacks CLIP or the identity model.
class TinyModelsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  /// Sampled start codes: seed → z → mapping → truncation 0.7 → W+, one row per seed.
  [[nodiscard]] torch::Tensor sampled_wplus(std::initializer_list<uint64_t> seeds) const;
  /// CLIP text embedding [1, D], outside autograd.
  [[nodiscard]] torch::Tensor text(const std::string& t) const;
  std::unique_ptr<Generator> gen_;
  std::unique_ptr<Clip> clip_;
  std::unique_ptr<IdentityModel> id_;
};

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};
/// Runs a program with arguments (no shell interpretation of them), capturing stdout/stderr.
RunResult run_program(const std::vector<std::string>& args);
/// Starts a program in the background, stdout and stderr into the given files; returns its pid.
int start_program(const std::vector<std::string>& args, const std::filesystem::path& out,
                  const std::filesystem::path& err);
/// Waits for a started program: its exit code, or 128 + the signal that killed it.
int wait_program(int pid);

/// Exports the checkpoint `fixture` (relative to fixtures_dir(), e.g. an NVIDIA .pkl) into the
/// bundle folder `out` with scripts/export_bundle.py --stylegan, as a user would.
RunResult export_stylegan_fixture(const std::string& fixture, const std::filesystem::path& out);

/// A copy of `bundle` in `dir` whose `part` file is replaced by `replacement`, with the manifest's
/// size and checksum updated: the bundle is consistent, only the file's contents are wrong.
std::filesystem::path bundle_with_replaced(const std::filesystem::path& bundle,
                                           const std::string& part,
                                           const std::filesystem::path& replacement,
                                           const std::filesystem::path& dir);

#ifdef STYLECLIP_BINARY
/// Runs the `styleclip` binary under test with `args` (end-to-end tests).
RunResult styleclip(std::vector<std::string> args);
/// Runs the tool with `args` and `--out out`, expecting exit 0 and each of `files` (relative to
/// `out`) to exist afterwards.
void run_ok(std::vector<std::string> args, const std::filesystem::path& out,
            const std::vector<std::string>& files);
#endif

std::string read_text(const std::filesystem::path& path);
/// The files below `dir` (relative, '/'-separated) whose names end with `suffix`.
std::set<std::string> files_with(const std::filesystem::path& dir, const std::string& suffix);
void write_text(const std::filesystem::path& path, const std::string& text);

}  // namespace styleclip::test

#define SKIP_UNLESS_FIXTURE(rel)                               \
  if (!::styleclip::test::have_fixture(rel))                   \
  GTEST_SKIP() << "fixture '" << (rel) << "' not found under " \
               << ::styleclip::test::fixtures_dir() << " (../shared/fixtures is absent)"

#define SKIP_UNLESS_BUNDLE(name)                                                     \
  if (!std::filesystem::exists(::styleclip::test::testdata(name) / "manifest.json")) \
  GTEST_SKIP() << "test bundle '" << (name) << "' was not made (see make_test_bundles)"
