#include "common.h"

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/numpy_random.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include <unistd.h>

#include <spdlog/spdlog.h>

namespace styleclip::cli {
namespace fs = std::filesystem;

void add_models_option(CLI::App& app, std::string& target) {
  app.add_option("--models", target,
                 "model bundle folder (default: $STYLECLIP_MODELS, else the bundled demo model)");
}

fs::path resolve_models(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("STYLECLIP_MODELS"); env != nullptr && *env != '\0') return env;
  const fs::path bundled = STYLECLIP_DEFAULT_MODELS;
  std::error_code ec;
  if (fs::exists(bundled / "manifest.json", ec)) return bundled;
  throw usage_error(
      "no model bundle given: use --models DIR or set STYLECLIP_MODELS (no bundled default "
      "model is installed at '" +
      bundled.string() + "')");
}

std::vector<uint64_t> parse_seeds(const std::string& spec) {
  const auto bad = [&]() {
    return usage_error("invalid --seed '" + spec +
                       "': expected N, N-M or a comma list such as 1,4,9-11");
  };
  std::vector<uint64_t> seeds;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789-") != std::string::npos) throw bad();
    const auto dash = item.find('-');
    try {
      if (dash == std::string::npos) {
        seeds.push_back(std::stoull(item));
      } else {
        const auto a = std::stoull(item.substr(0, dash));
        const auto b = std::stoull(item.substr(dash + 1));
        if (b < a || b - a > 100000) throw bad();
        for (auto s = a; s <= b; ++s) seeds.push_back(s);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception&) {
      throw bad();
    }
  }
  if (seeds.empty()) throw bad();
  return seeds;
}

void check_seeds(const std::vector<uint64_t>& seeds, const GeneratorInfo& info,
                 const fs::path& models) {
  if (info.seed_convention != SeedConvention::kNumpyRandomState) return;
  for (const auto seed : seeds) {
    if (seed > kNumpyMaxSeed) {
      throw usage_error("invalid --seed " + std::to_string(seed) + ": model bundle '" +
                        models.string() +
                        "' draws z as NVIDIA's tools do, with numpy's RandomState, whose seeds are "
                        "0-" +
                        std::to_string(kNumpyMaxSeed));
    }
  }
}

void require_finite_numbers(CLI::App& app) {
  const CLI::Validator finite(
      [](std::string& value) {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (end != value.c_str() && !std::isfinite(v)) {
          return std::string("must be a finite number, found '") + value + "'";
        }
        return std::string();  // anything else is the option's own type check to judge
      },
      "", "finite");
  for (auto* opt : app.get_options()) {
    if (opt->get_type_name().rfind("FLOAT", 0) == 0) opt->check(finite);  // "FLOAT:" + checks
  }
  for (auto* sub : app.get_subcommands({})) require_finite_numbers(*sub);
}

void add_class_option(CLI::App& app, std::optional<int64_t>& target) {
  app.add_option("--class", target,
                 "class of the sampled latents, for a conditional generator (0 to classes - 1; "
                 "styleclip info shows how many)")
      ->check(CLI::NonNegativeNumber);
}

std::optional<int64_t> check_class(const std::optional<int64_t>& flag, const GeneratorInfo& info,
                                   const fs::path& models, bool samples_z,
                                   const std::string& sampled_by) {
  const std::string bundle = "model bundle '" + models.string() + "'";
  if (info.c_dim == 0) {
    if (flag) {
      throw usage_error("--class " + std::to_string(*flag) + " given, but " + bundle +
                        " is unconditional (drop --class)");
    }
    return std::nullopt;
  }
  const std::string classes = bundle + " is conditional with " + std::to_string(info.c_dim) +
                              " classes (0-" + std::to_string(info.c_dim - 1) + ")";
  if (!samples_z) {
    if (flag) {
      throw usage_error("--class picks the class of latents sampled with " + sampled_by +
                        ", and nothing is sampled here (drop --class)");
    }
    return std::nullopt;
  }
  if (!flag) throw usage_error("--class is required: " + classes);
  if (*flag < 0 || *flag >= info.c_dim) {
    throw usage_error("invalid --class " + std::to_string(*flag) + ": " + classes);
  }
  return flag;
}

void add_device_options(CLI::App& app, std::string& device, std::string& precision) {
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", precision,
                 "the models' arithmetic: auto (bf16 on CUDA, fp32 on the CPU), fp32, tf32, bf16 "
                 "or fp16 (CUDA); latents and losses stay fp32")
      ->capture_default_str();
}

nlohmann::json sidecar_header(const std::string& command, const fs::path& models,
                              const nlohmann::json& checksums) {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char stamp[32];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  nlohmann::json side = {{"tool", "styleclip"},
                         {"version", STYLECLIP_VERSION},
                         {"command", command},
                         {"created", stamp},
                         {"models", nullptr}};  // a command that used no bundle
  if (!models.empty()) {
    side["models"] = {{"dir", fs::absolute(models).lexically_normal().string()},
                      {"sha256", checksums}};
  }
  return side;
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace styleclip::cli

namespace styleclip::cli {

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Progress::Progress(std::string label, int total)
    : label_(std::move(label)),
      total_(total),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(now_seconds()) {}

void Progress::update(int done, const std::string& extra) {
  const double elapsed = now_seconds() - start_;
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? kWidth * done / total_ : kWidth;
    std::fprintf(stderr, "\r%s [%s%s] %d/%d %s %.1f/s ETA %.0fs   ", label_.c_str(),
                 std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(kWidth - filled), '.').c_str(), done, total_, extra.c_str(),
                 rate, eta);
    std::fflush(stderr);
    return;
  }
  const int decile = total_ > 0 ? 10 * done / total_ : 10;
  if (decile != last_decile_) {
    last_decile_ = decile;
    spdlog::info("{} {}/{} {} ({:.1f}/s, ETA {:.0f} s)", label_, done, total_, extra, rate, eta);
  }
}

void Progress::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

std::string slug(const std::string& text) {
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) != 0) {
      out.push_back(static_cast<char>(std::tolower(c)));
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
    if (out.size() >= 40) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "prompt" : out;
}

}  // namespace styleclip::cli
