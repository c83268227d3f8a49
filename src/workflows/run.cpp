// What every run shares: sidecar headers, JSON files, progress, output names (run.h).
#include <styleclip/workflows/run.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <styleclip/io/atomic_file.h>

namespace styleclip {
namespace fs = std::filesystem;

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

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Progress::Progress(std::string label, int total, double elapsed)
    : label_(std::move(label)),
      total_(total),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(now_seconds() - elapsed) {}

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

}  // namespace styleclip
