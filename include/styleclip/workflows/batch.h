// styleclip/workflows/batch.h — what batch runs share: input expansion (files and folders),
// sharding across machines, prompt files, interruption, and the run summary.
//
// Sharding is deterministic and needs no coordinator: every process expands the same inputs in
// the same sorted order and takes the K-th of N contiguous, balanced slices (sizes differ by at
// most one), so a Slurm job array or a Kubernetes indexed Job covers a folder exactly once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace styleclip {

/// One input file found by expansion, with the output name that keeps its place: the path
/// relative to the folder it was found in, without extension ("sub/dir/x" for a recursive find),
/// or the stem for a file given directly.
struct InputFile {
  std::filesystem::path path;
  std::string name;
};

/// Expands files and folders into sorted input files. A folder contributes the files matching
/// any of `globs` (e.g. "*.pt"), descending into sub-folders when `recursive`. A path that does
/// not exist, or a folder with nothing matching, is a usage error naming it.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths, bool recursive,
                                     const std::vector<std::string>& globs);

/// Shard K of N (1-based).
struct Shard {
  std::size_t index = 1;
  std::size_t count = 1;
  std::string source;  ///< "--shard 2/4", "SLURM_ARRAY_TASK_ID", ...
};

/// Parses "K/N" or "auto" (Slurm job array: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN and
/// SLURM_ARRAY_TASK_COUNT; Kubernetes indexed Job: JOB_COMPLETION_INDEX and STYLECLIP_SHARDS).
/// Empty spec → 1/1. Throws a usage error naming --shard or the variable otherwise.
Shard parse_shard(const std::string& spec);

/// The [begin, end) range of `n` sorted items that shard `s` takes.
std::pair<std::size_t, std::size_t> shard_range(std::size_t n, const Shard& s);

/// One prompt per line; blank lines and lines starting with '#' are skipped. Throws an input
/// error naming the file when it cannot be read, is not UTF-8, or holds no prompt.
std::vector<std::string> read_prompts(const std::filesystem::path& path);

/// SIGINT/SIGTERM set a flag instead of killing the process while this guard lives, so the
/// current input can finish or be abandoned cleanly (no partial file: every write is atomic). A
/// second signal ends the process at once. The flag is cleared when a guard is made.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  [[nodiscard]] static bool interrupted();

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

/// Counts of a batch run, printed on stderr at the end (and returned as JSON for --json).
class RunSummary {
 public:
  explicit RunSummary(std::string command);
  void done(const nlohmann::json& row);
  void skipped(const std::string& name);
  void failed(const std::string& name, const std::string& reason);
  [[nodiscard]] std::size_t failures() const { return failures_.size(); }
  /// Logs the summary on stderr; returns it as JSON.
  nlohmann::json finish(bool interrupted);

 private:
  std::string command_;
  std::chrono::steady_clock::time_point start_;
  nlohmann::json outputs_ = nlohmann::json::array();
  nlohmann::json failures_ = nlohmann::json::array();
  std::size_t done_ = 0;
  std::size_t skipped_ = 0;
};

}  // namespace styleclip
