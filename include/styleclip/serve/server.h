// styleclip/serve/server.h — `styleclip serve`: the Studio (studio.h) over HTTP, with its page.
//
// Routes (docs/serve.md documents each with curl):
//   GET  /                           the page (one file, shipped in the binary)
//   GET  /api/info                   models, engines and their options, mappers, limits
//   POST /api/latents                {"seed": N, "truncation": 0.7}  → a latent
//   GET  /api/latents[/ID[/FILE]]    latents; FILE: image.png, target.png, latent.pt
//   POST /api/photos?aligned=&with=&steps=   body: the picture's bytes → a photo job
//   POST /api/preview                a global-direction edit rendered now (PNG as a data URL)
//   POST /api/jobs                   {"latent", "method", "text", "options"} → an edit job
//   GET  /api/jobs[/ID]              jobs with progress and results
//   DELETE /api/jobs/ID              cancel
//   GET  /api/jobs/ID/files/KEY      image, before, compare, latent, styles, sidecar
// Errors are JSON {"error": message, "code": name} with 400 (usage), 401 (token), 403 (another
// site's page or host name, without a token), 404, 409 (superseded, ended, or the bundle cannot
// do it), 413 (too large), 415 (not JSON, not a picture), 422 (input unusable), 503 (busy or
// stopping).
#pragma once

#include <memory>
#include <string>

#include <styleclip/serve/studio.h>

namespace styleclip {

/// Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost): the only hosts the
/// server binds to without a token.
bool is_loopback_host(const std::string& host);

class Server {
 public:
  /// Checks the options (a usage error for a non-loopback host without a token), loads the
  /// models and binds the port (a usage error naming --host/--port when it cannot).
  explicit Server(const ServeOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The port bound (the chosen one for --port 0).
  [[nodiscard]] int port() const;
  /// Serves until stop() (at once when stop() came first); false when listening failed.
  bool listen();
  /// Stops listening, cancels the jobs and stops the model thread; from any thread, before or
  /// during listen(). Destroy the Server only after listen() has returned.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace styleclip
