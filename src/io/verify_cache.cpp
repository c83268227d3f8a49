// The record of files whose sha256 was checked: see include/styleclip/io/verify_cache.h.
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/verify_cache.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <vector>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFileName = "verified-files.json";
constexpr std::size_t kMaxEntries = 256;

int64_t ns(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

/// What identifies a file's content without reading it; null when it cannot be stat'ed.
json identity(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return nullptr;
  return {{"size", int64_t{st.st_size}},
          {"ino", uint64_t{st.st_ino}},
          {"dev", uint64_t{st.st_dev}},
          {"mtime_ns", ns(st.st_mtim)},
          {"ctime_ns", ns(st.st_ctim)}};
}

std::string key(const fs::path& file) {
  std::error_code ec;
  const auto abs = fs::absolute(file, ec);
  return (ec ? file : abs).lexically_normal().string();
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json read_entries(const fs::path& dir) {
  if (dir.empty()) return json::object();
  std::ifstream in(dir / kFileName);
  if (!in) return json::object();
  // A damaged record is as good as none: everything is hashed again and it is rewritten.
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

bool same_identity(const json& entry, const json& now) {
  for (const char* f : {"size", "ino", "dev", "mtime_ns", "ctime_ns"}) {
    if (!entry.contains(f) || entry.at(f) != now.at(f)) return false;
  }
  return true;
}

}  // namespace

VerifyCache VerifyCache::from_environment() {
  if (const char* d = std::getenv("STYLECLIP_CACHE_DIR")) {
    const std::string v(d);
    return VerifyCache(v.empty() || v == "off" ? fs::path() : fs::path(v));
  }
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && fs::path(x).is_absolute()) {
    return VerifyCache(fs::path(x) / "styleclip");
  }
  if (const char* h = std::getenv("HOME"); h && fs::path(h).is_absolute()) {
    return VerifyCache(fs::path(h) / ".cache" / "styleclip");
  }
  return VerifyCache(fs::path());
}

VerifyCache::VerifyCache(fs::path dir)
    : dir_(std::move(dir)), entries_(read_entries(dir_)), added_(json::object()) {}

std::optional<std::string> VerifyCache::lookup(const fs::path& file) const {
  if (!enabled()) return std::nullopt;
  const auto it = entries_.find(key(file));
  if (it == entries_.end() || !it->is_object()) return std::nullopt;
  const json now = identity(file);
  if (now.is_null() || !same_identity(*it, now)) return std::nullopt;
  const auto sha = it->find("sha256");
  if (sha == it->end() || !sha->is_string()) return std::nullopt;
  return sha->get<std::string>();
}

void VerifyCache::remember(const fs::path& file, const std::string& sha256) {
  if (!enabled()) return;
  json entry = identity(file);
  if (entry.is_null()) return;
  const int64_t t = now_ns();
  const int64_t changed =
      std::max(entry["mtime_ns"].get<int64_t>(), entry["ctime_ns"].get<int64_t>());
  if (t - changed < std::chrono::nanoseconds(kRacyMargin).count()) return;
  entry["sha256"] = sha256;
  entry["verified_at_ns"] = t;
  added_[key(file)] = std::move(entry);
}

void VerifyCache::save() {
  if (!enabled() || added_.empty()) return;
  // Read again: another process may have recorded files since this one started.
  json all = read_entries(dir_);
  for (const auto& [k, v] : added_.items()) all[k] = v;
  std::vector<std::pair<int64_t, std::string>> kept;
  for (const auto& [k, v] : all.items()) {
    std::error_code ec;
    if (!v.is_object() || !fs::exists(k, ec)) continue;
    kept.emplace_back(v.value("verified_at_ns", int64_t{0}), k);
  }
  std::sort(kept.rbegin(), kept.rend());  // newest first
  if (kept.size() > kMaxEntries) kept.resize(kMaxEntries);
  json out = json::object();
  for (const auto& [t, k] : kept) out[k] = all[k];
  try {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    write_file_atomic(dir_ / kFileName, out.dump(1));
    added_ = json::object();
  } catch (...) {
    // Only an optimisation: the next command hashes these files again.
  }
}

}  // namespace styleclip
