#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <styleclip/io/sha256.h>
#include <styleclip/runtime.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

namespace styleclip::test {
namespace fs = std::filesystem;

namespace {
/// The same runtime settings as the CLI (threads, executor), before any test runs.
class RuntimeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { configure_runtime(0); }
};
[[maybe_unused]] const auto* const kRuntime =
    ::testing::AddGlobalTestEnvironment(new RuntimeEnvironment);
}  // namespace

fs::path fixtures_dir() {
  if (const char* env = std::getenv("STYLECLIP_FIXTURES"); env != nullptr && *env) return env;
  return STYLECLIP_FIXTURES_DIR;
}

bool have_fixture(const std::string& relative) { return fs::exists(fixtures_dir() / relative); }

fs::path testdata(const std::string& name) { return fs::path(STYLECLIP_TESTDATA_DIR) / name; }

fs::path copy_testdata(const std::string& name, const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(testdata(name))) {
    fs::copy(e.path(), dir / e.path().filename());
  }
  return dir;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "styleclip-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

::testing::AssertionResult tensors_close(const torch::Tensor& a, const torch::Tensor& b,
                                         double atol) {
  if (a.sizes() != b.sizes()) {
    std::ostringstream s;
    s << "shapes differ: " << a.sizes() << " vs " << b.sizes();
    return ::testing::AssertionFailure() << s.str();
  }
  const double worst = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  if (!(worst <= atol)) {
    return ::testing::AssertionFailure() << "max abs difference " << worst << " > " << atol;
  }
  return ::testing::AssertionSuccess() << "max abs difference " << worst;
}

c10::IValue load_pt(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::jit::pickle_load(data);
}

torch::Tensor dict_tensor(const c10::IValue& dict, const std::string& key) {
  for (const auto& kv : dict.toGenericDict()) {
    if (kv.key().toStringRef() == key) return kv.value().toTensor();
  }
  throw std::runtime_error("key '" + key + "' not in dict");
}

void TinyModelsTest::SetUp() {
  if (!fs::exists(testdata("tiny") / "manifest.json"))
    GTEST_SKIP() << "test bundle 'tiny' was not made";
  const auto bundle = Bundle::open(testdata("tiny"));
  if (!bundle.has("clip") || !bundle.has("identity"))
    GTEST_SKIP() << "tiny bundle lacks CLIP or identity";
  gen_ = std::make_unique<Generator>(bundle, torch::kCPU);
  clip_ = std::make_unique<Clip>(bundle, torch::kCPU);
  id_ = std::make_unique<IdentityModel>(bundle, torch::kCPU);
}

torch::Tensor TinyModelsTest::sampled_wplus(std::initializer_list<uint64_t> seeds) const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows;
  for (const auto s : seeds) {
    rows.push_back(
        gen_->broadcast(gen_->truncate(gen_->mapping(gen_->seed_z(s).unsqueeze(0)), 0.7)));
  }
  return torch::cat(rows, 0);
}

torch::Tensor TinyModelsTest::text(const std::string& t) const {
  torch::NoGradGuard no_grad;
  return clip_->encode_text({t});
}

int start_program(const std::vector<std::string>& args, const fs::path& out, const fs::path& err) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::FILE* o = std::freopen(out.c_str(), "w", stdout);
    std::FILE* e = std::freopen(err.c_str(), "w", stderr);
    if (o == nullptr || e == nullptr) std::_Exit(126);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

int wait_program(int pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RunResult run_program(const std::vector<std::string>& args) {
  TempDir io;
  const auto out = io / "stdout";
  const auto err = io / "stderr";
  RunResult r;
  r.code = wait_program(start_program(args, out, err));
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

RunResult export_stylegan_fixture(const std::string& fixture, const fs::path& out) {
  return run_program({STYLECLIP_PYTHON,
                      (fs::path(STYLECLIP_SOURCE_DIR) / "scripts/export_bundle.py").string(),
                      "--stylegan", (fixtures_dir() / fixture).string(), "--out", out.string()});
}

fs::path bundle_with_replaced(const fs::path& bundle, const std::string& part,
                              const fs::path& replacement, const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(bundle))
    fs::copy(e.path(), dir / e.path().filename());
  auto m = nlohmann::json::parse(read_text(dir / "manifest.json"));
  const auto target = dir / m["files"][part]["path"].get<std::string>();
  fs::copy(replacement, target, fs::copy_options::overwrite_existing);
  m["files"][part]["bytes"] = fs::file_size(target);
  m["files"][part]["sha256"] = sha256_file(target);
  write_text(dir / "manifest.json", m.dump(2));
  return dir;
}

#ifdef STYLECLIP_BINARY
RunResult styleclip(std::vector<std::string> args) {
  args.insert(args.begin(), STYLECLIP_BINARY);
  return run_program(args);
}

void run_ok(std::vector<std::string> args, const fs::path& out,
            const std::vector<std::string>& files) {
  args.insert(args.end(), {"--out", out.string()});
  const auto r = styleclip(args);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& f : files) EXPECT_TRUE(fs::exists(out / f)) << out / f << "\n" << r.err;
}
#endif

std::set<std::string> files_with(const fs::path& dir, const std::string& suffix) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const auto name = e.path().lexically_relative(dir).generic_string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.insert(name);
  }
  return out;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace styleclip::test
