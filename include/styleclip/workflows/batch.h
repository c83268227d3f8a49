// styleclip/workflows/batch.h — what batch runs share: input expansion (files and folders),
// sharding across machines, prompt files, interruption, the run summary, and `BatchRun`, the
// bookkeeping that `edit`, `generate`, `invert` and `align` all run their inputs through.
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

#include <optional>
#include <utility>

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

/// Where a batch command's inputs come from and which of them this run does.
struct BatchInputs {
  std::vector<std::string> paths;  ///< files and folders
  bool recursive = false;          ///< look into sub-folders of folders
  std::vector<std::string> globs;  ///< the file patterns taken from folders
  std::string shard;               ///< "K/N" or "auto" (parse_shard); empty: everything
  bool overwrite = false;          ///< redo inputs whose outputs exist (default: skip them)
};

/// The patterns of photo files (JPEG, PNG, WebP, TIFF, BMP, either case): the folder patterns
/// of `align` and `invert`.
std::vector<std::string> photo_globs();

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
/// second signal ends the process at once. The flag is cleared when a guard is made and when it
/// ends.
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
  /// Restarts the clock (the rate counts the work, not the checks and model loading before it).
  void restart_clock() { start_ = std::chrono::steady_clock::now(); }
  void done(const nlohmann::json& row);
  /// `row`, when given, is listed with the outputs (e.g. a cached inversion's latent).
  void skipped(const std::string& name, const nlohmann::json& row = nullptr);
  void failed(const std::string& name, const std::string& reason);
  [[nodiscard]] std::size_t failures() const { return failures_.size(); }
  [[nodiscard]] std::size_t done_count() const { return done_; }
  [[nodiscard]] std::size_t skipped_count() const { return skipped_; }
  /// The first failure's reason ("" when none).
  [[nodiscard]] std::string first_failure() const;
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

/// What a batch run ends with.
struct BatchReport {
  nlohmann::json summary;  ///< RunSummary's JSON
  int exit_code = 0;       ///< ExitCode: 0, 1 (some inputs failed), 130 (interrupted)
};

/// A batch run's bookkeeping, the same for every batch command: this process's shard of the
/// sorted inputs, inputs that an earlier run finished skipped (their sidecar, written last, is
/// there), an input that cannot be used failing alone while the others go on, Ctrl-C ending the
/// run at the next input (nothing half-written: every write is atomic), and the summary.
class BatchRun {
 public:
  /// Parses the shard: a usage error names --shard or the environment variable.
  BatchRun(std::string command, const std::string& shard, bool overwrite);

  /// The [first, last) of `n` sorted inputs that this process takes (logged when sharded).
  [[nodiscard]] std::pair<std::size_t, std::size_t> take(std::size_t n) const;

  /// From here on Ctrl-C asks the run to stop instead of ending the process, and the summary's
  /// clock runs. Call it once the checks have passed and the models are loaded.
  void start();

  /// True, and counted as skipped, when `sidecar` exists and overwrite is off.
  bool finished(const std::string& name, const std::filesystem::path& sidecar,
                const nlohmann::json& row = nullptr);

  /// Whether Ctrl-C (or SIGTERM) came since start(); once true, it stays true.
  bool stop_requested();
  /// Records that the run stopped early (e.g. work abandoned on Ctrl-C).
  void stopped() { interrupted_ = true; }

  RunSummary& summary() { return summary_; }

  /// Logs the summary and returns it with the exit code. When every one of several inputs
  /// failed, throws an input error instead: "none of the N <what> could be <verb>; the first:
  /// <reason>" (`what_verb` is e.g. "photos could be aligned"; empty: no such check).
  BatchReport finish(std::size_t inputs, const std::string& what_verb = "");

 private:
  std::string command_;
  Shard shard_;
  bool overwrite_;
  bool interrupted_ = false;
  std::optional<InterruptGuard> guard_;
  RunSummary summary_;
};

}  // namespace styleclip
