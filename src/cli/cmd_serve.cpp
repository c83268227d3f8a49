// `styleclip serve` — the editor in a browser and its JSON API (serve/server.h).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <pthread.h>

#include <spdlog/spdlog.h>

#include <styleclip/serve/server.h>

#include "common.h"

namespace styleclip::cli {
namespace {

struct ServeCommand {
  std::string models;
  ServeOptions options;
  std::vector<std::string> mappers;
  double max_upload_mb = 20;
};

/// Ctrl-C and SIGTERM are taken by a thread of their own (sigwait), never by a handler that
/// interrupts whatever runs (main blocks both before any thread starts: block_stop_signals).
/// Before the server is up a signal ends the process at once (nothing is written yet); then the
/// first stops the server cleanly, and a second ends the process while that waits for a job.
class StopOnSignal {
 public:
  StopOnSignal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    thread_ = std::thread([this] {
      for (int count = 0;; ++count) {
        int sig = 0;
        sigwait(&set_, &sig);
        if (done_) return;
        Server* server = server_;
        if (server == nullptr || count > 0) std::_Exit(130);
        spdlog::info("stopping (a second Ctrl-C ends at once)");
        // Stopping waits for the running job's step: not on this thread, which must hear a
        // second signal.
        const std::lock_guard<std::mutex> lock(mutex_);
        stopper_ = std::thread([server] { server->stop(); });
      }
    });
  }
  /// From now on a signal stops `server` (and one that came already stops it at once).
  void attach(Server& server) { server_ = &server; }
  ~StopOnSignal() { finish(); }
  /// Waits for a stop that a signal began, then ends the signal thread (before the server goes
  /// away). A second signal still ends the process while this waits.
  void finish() {
    join_stopper();
    done_ = true;
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGTERM);  // wakes its sigwait
      thread_.join();
    }
    join_stopper();  // a signal that came while finishing
  }

 private:
  void join_stopper() {
    std::thread stopper;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopper.swap(stopper_);
    }
    if (stopper.joinable()) stopper.join();
  }
  sigset_t set_{};
  std::mutex mutex_;
  std::thread thread_, stopper_;
  std::atomic<Server*> server_{nullptr};
  std::atomic<bool> done_{false};
};

int run_serve(ServeCommand& c) {
  StopOnSignal signals;  // Ctrl-C while the models load ends the process at once
  c.options.models = resolve_models(c.models);
  for (const auto& m : c.mappers) c.options.mappers.emplace_back(m);
  if (!(c.max_upload_mb > 0)) throw usage_error("invalid --max-upload-mb: must be positive");
  c.options.max_upload_bytes = static_cast<int64_t>(c.max_upload_mb * 1024 * 1024);
  spdlog::info("loading {}", c.options.models.string());
  Server server(c.options);
  const std::string host =
      c.options.host.find(':') != std::string::npos ? "[" + c.options.host + "]" : c.options.host;
  std::string url = "http://" + host + ":" + std::to_string(server.port()) + "/";
  if (!c.options.token.empty()) url += "#token=" + c.options.token;
  // The address on stdout (scripts and tests read it), the rest on the log.
  std::printf("listening on %s\n", url.c_str());
  std::fflush(stdout);
  spdlog::info("open {} in a browser; outputs go to {} (Ctrl-C stops)", url,
               c.options.out.string());
  signals.attach(server);
  const bool ok = server.listen();
  signals.finish();
  server.stop();
  spdlog::info("stopped");
  return ok ? 0 : static_cast<int>(ExitCode::kDevice);
}

}  // namespace

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void setup_serve(CLI::App& app, Registry& reg) {
  auto c = std::make_shared<ServeCommand>();
  auto& o = c->options;
  auto* sub = app.add_subcommand(
      "serve", "the interactive editor in a browser, and a JSON API (loads the models once)");
  add_models_option(*sub, c->models);
  sub->add_option("--host", o.host, "address to listen on (anything but loopback needs --token)")
      ->capture_default_str();
  sub->add_option("--port", o.port, "port (0: any free one, printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  sub->add_option("--token", o.token,
                  "secret every /api/ request must carry (Authorization: Bearer TOKEN)");
  sub->add_option("--out", o.out, "folder for uploads, inversions and job results")
      ->capture_default_str();
  sub->add_option("--mapper", c->mappers,
                  "mapper files offered besides the bundle's *.mapper.pt (by file name)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--face-detector", o.face_detector,
                  "YuNet model for uploaded photos (default: the bundle's face_detector.onnx)");
  sub->add_option("--max-upload-mb", c->max_upload_mb, "largest upload, MiB")
      ->capture_default_str();
  sub->add_option("--max-pixels", o.max_pixels,
                  "largest uploaded picture in pixels (refused before it is decoded)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-jobs", o.max_waiting_jobs, "jobs that may wait at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  add_device_options(*sub, o.device, o.precision);
  reg.push_back({sub, [c] { return run_serve(*c); }});
}

}  // namespace styleclip::cli
