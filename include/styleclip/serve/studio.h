// styleclip/serve/studio.h — what `styleclip serve` does, without HTTP: one model set in memory,
// the latents a user works on, live global-direction previews, and background jobs (an engine's
// edit, a photo's inversion) with progress and cancel.
//
// Every request arrives as JSON and leaves as JSON (or bytes); every failure is a styleclip::Error
// (its category says whose mistake it was) or a StudioError (not found, busy, superseded). Nothing
// a request says becomes a path: latents, jobs and their files are found by ids this class made,
// and everything it writes lies under ServeOptions::out.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/error.h>
#include <styleclip/runtime.h>
#include <styleclip/serve/device_queue.h>

namespace styleclip {

class Bundle;
class Clip;
class Generator;
class IdentityModel;
struct GlobalStats;

struct ServeOptions {
  std::filesystem::path models;                   ///< the bundle folder
  std::filesystem::path out = "styleclip-serve";  ///< uploads, inversions and job results
  std::string host = "127.0.0.1";
  int port = 8080;    ///< 0: any free port (tests)
  std::string token;  ///< required of every /api/ request when set
  std::string device = "auto";
  std::string precision = "auto";
  std::vector<std::filesystem::path> mappers;  ///< offered besides the bundle's *.mapper.pt
  std::string face_detector;                   ///< empty: the bundle's, if any
  int64_t max_upload_bytes = 20 << 20;
  int64_t max_pixels = 50'000'000;  ///< uploads with more pixels are refused before decoding
  size_t max_waiting_previews = 8;  // well below the HTTP threads (32): others stay answered
  size_t max_waiting_jobs = 16;
  int max_invert_steps = 1000;  ///< the most projector steps one upload may ask for
};

/// A failure that is not a styleclip::Error category: the HTTP status says what it is.
class StudioError : public std::runtime_error {
 public:
  StudioError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  [[nodiscard]] int status() const { return status_; }
  [[nodiscard]] const std::string& code() const { return code_; }

 private:
  int status_;
  std::string code_;
};

/// The name an error of category `code` has in the API's answers and a job's `error.code`:
/// usage, input, bundle, device, stopping (an interrupted request), internal.
const char* error_code_name(ExitCode code);

/// A file a job or latent offers for download.
struct Download {
  std::string bytes;
  std::string content_type;
  std::string filename;  ///< for Content-Disposition
};

class Studio {
 public:
  /// Opens the bundle and loads its models (seconds at 1024 px); throws bundle, usage or device
  /// errors as the CLI would.
  explicit Studio(ServeOptions options);
  ~Studio();
  Studio(const Studio&) = delete;
  Studio& operator=(const Studio&) = delete;

  /// The model set, the engines and their options, the mappers, limits.
  [[nodiscard]] nlohmann::json info() const;

  /// {"seed": N, "truncation": psi (default 0.7), "class": K}: a latent from a seed.
  nlohmann::json add_seed(const nlohmann::json& request);
  /// An uploaded picture (its bytes) becomes a photo job: aligned (or face-detected) and
  /// inverted, ending in a new latent. `params`: aligned (bool), with (auto|encoder|optimize),
  /// steps.
  nlohmann::json add_photo(const std::string& bytes, const nlohmann::json& params);
  [[nodiscard]] nlohmann::json latents() const;
  [[nodiscard]] nlohmann::json latent(const std::string& id) const;
  /// "image.png" (its rendering), "target.png" (a photo's aligned crop), "latent.pt".
  [[nodiscard]] Download latent_file(const std::string& id, const std::string& file) const;

  /// {"latent", "neutral", "target", "strength", "threshold" (number or "auto"), "templates",
  /// "client"}: the global edit rendered now (queued before any job). A newer preview from the
  /// same `client` supersedes a waiting one (StudioError 409).
  nlohmann::json preview(const nlohmann::json& request);

  /// {"latent", "method", "text", "options": {name: value}}: an edit by any engine as a
  /// background job; returns the job.
  nlohmann::json add_job(const nlohmann::json& request);
  [[nodiscard]] nlohmann::json jobs() const;
  [[nodiscard]] nlohmann::json job(const std::string& id) const;
  /// Cancels a waiting or running job; StudioError 409 when it has already ended.
  nlohmann::json cancel(const std::string& id);
  /// "image", "before", "compare", "latent", "styles", "sidecar".
  [[nodiscard]] Download job_file(const std::string& id, const std::string& file) const;

  /// Cancels every job and stops the model thread (what a server does on Ctrl-C).
  void shutdown();

 private:
  struct Latent;
  struct Job;
  struct Models;

  [[nodiscard]] std::shared_ptr<const Latent> find_latent(const std::string& id) const;
  [[nodiscard]] std::shared_ptr<Job> find_job(const std::string& id) const;
  std::shared_ptr<const Latent> keep_latent(Latent latent);
  std::string new_id();
  /// Queues `job` (its id and time set here); StudioError 503 when too many wait.
  nlohmann::json post(const std::shared_ptr<Job>& job);
  /// On the model thread: runs the job and records how it ended.
  void run_job(const std::shared_ptr<Job>& job);
  nlohmann::json run_edit_job(Job& job);
  nlohmann::json run_photo_job(Job& job);
  /// Jobs waiting to run, cancelled ones left out (the caller holds mutex_).
  [[nodiscard]] size_t waiting_jobs() const;
  nlohmann::json render_preview(const nlohmann::json& request, const Latent& latent);
  bool job_should_stop(Job& job);

  ServeOptions options_;
  std::unique_ptr<Models> models_;
  mutable std::mutex mutex_;
  std::mutex shutdown_mutex_;
  std::map<std::string, std::shared_ptr<const Latent>> latents_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::map<std::string, uint64_t> preview_serial_;  ///< per client: the newest preview's number
  uint64_t serial_ = 0;
  std::atomic<bool> stopping_{false};
  DeviceQueue queue_;
};

}  // namespace styleclip
