// styleclip/workflows/run.h — what every run shares: the sidecar's header, JSON files written
// atomically, progress on stderr, and output names from prompts.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace styleclip {

/// The fields every sidecar starts with: tool version, command, time, bundle and checksums
/// (`models` empty: a command that used no bundle).
nlohmann::json sidecar_header(const std::string& command, const std::filesystem::path& models,
                              const nlohmann::json& checksums);

/// Writes JSON (pretty, newline-terminated) atomically.
void write_json(const std::filesystem::path& path, const nlohmann::json& j);

/// Progress of long work on stderr: a redrawn bar on a terminal, plain log lines (every 10 %)
/// otherwise, so batch logs stay readable.
class Progress {
 public:
  /// `elapsed` seconds of the work were done before this reporter was made (its rate and ETA
  /// count them).
  Progress(std::string label, int total, double elapsed = 0.0);
  /// `extra` is shown after the counts, e.g. "loss 0.731".
  void update(int done, const std::string& extra = "");
  void finish();

 private:
  std::string label_;
  int total_;
  bool tty_;
  int last_decile_ = -1;
  double start_;
};

/// "A Blue Shape!" → "a-blue-shape" (at most 40 characters), for output names.
std::string slug(const std::string& text);

}  // namespace styleclip
