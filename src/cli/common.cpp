#include "common.h"

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>

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

nlohmann::json sidecar_header(const std::string& command, const fs::path& models,
                              const nlohmann::json& checksums) {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char stamp[32];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {{"tool", "styleclip"},
          {"version", STYLECLIP_VERSION},
          {"command", command},
          {"created", stamp},
          {"models",
           {{"dir", fs::absolute(models).lexically_normal().string()}, {"sha256", checksums}}}};
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace styleclip::cli
