// styleclip/io/verify_cache.h — remembers which files were found to have which sha256, so that an
// unchanged model file is not hashed again by every command.
//
// Why: `Bundle::open` checks every file's sha256. A real bundle (FFHQ generator,
// CLIP ViT-B/32, e4e encoder, ArcFace, LPIPS) is about 2 GB, which this machine hashes at about
// 1 GB/s with its SHA instructions and 200 MB/s without: 2–10 s before every command, even
// `tokenize`, and 100–500 times a 20 ms global edit.
// A file whose identity and change times are what they were when it last hashed right has not
// been written since, so its checksum still holds.
//
// An entry is kept per absolute path: size, inode, device, modification and status-change
// times (ns) and the sha256 found. It is trusted only when all of them match now; any write
// changes the status-change time (which no user call can set back), so a modified or replaced
// file is hashed again. A file changed within `kRacyMargin` of being hashed is not recorded
// (git's "racy clean" problem: a write in the same timestamp tick would keep the times equal).
//
// The record lives in $STYLECLIP_CACHE_DIR, else $XDG_CACHE_HOME/styleclip, else
// $HOME/.cache/styleclip (file `verified-files.json`). It is only an optimisation: when it cannot
// be read or written, every file is hashed, and nothing is reported. STYLECLIP_CACHE_DIR=off
// turns it off; `styleclip info` always hashes every file.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace styleclip {

class VerifyCache {
 public:
  static constexpr std::chrono::seconds kRacyMargin{2};

  /// The cache in the folder named by the environment (see above); none when it names none.
  static VerifyCache from_environment();
  /// The cache in `dir` (read now); an empty path means no cache.
  explicit VerifyCache(std::filesystem::path dir);

  /// The sha256 recorded for `file` if the file is unchanged since it was recorded.
  [[nodiscard]] std::optional<std::string> lookup(const std::filesystem::path& file) const;
  /// Records that `file` has `sha256` now (the caller just hashed it). Skipped for racy files.
  void remember(const std::filesystem::path& file, const std::string& sha256);
  /// Writes what remember() added (atomically; errors ignored). Also drops entries of files
  /// that no longer exist, and the oldest beyond a few hundred.
  void save();

  [[nodiscard]] bool enabled() const { return !dir_.empty(); }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  nlohmann::json entries_;  // absolute path -> entry, as read (what lookup() trusts)
  nlohmann::json added_;    // what remember() recorded since, for save()
};

}  // namespace styleclip
