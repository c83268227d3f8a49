// `styleclip serve` over HTTP (server.h): routes, the token, limits, and errors as JSON.
// cpp-httplib (Debian's libcpp-httplib-dev) runs each request on its thread pool; everything that
// touches the models goes through the Studio's model thread.
#include <styleclip/serve/server.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <styleclip/error.h>
#include <styleclip/runtime.h>

namespace styleclip {
namespace {
using nlohmann::json;

// The page: src/serve/page.html, made into a string literal by the build (no build step for the
// page itself, nothing fetched by the browser from elsewhere).
#include "page_html.inc"

int status_of(ExitCode code) {
  switch (code) {
    case ExitCode::kUsage:
      return 400;
    case ExitCode::kInputUnusable:
      return 422;
    case ExitCode::kBundleInvalid:
      return 409;  // the model set cannot do what was asked (e.g. no global statistics)
    case ExitCode::kDevice:
    case ExitCode::kInterrupted:
      return 503;
    default:
      return 500;
  }
}

void send_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump() + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message) {
  send_json(res, {{"error", message}, {"code", code}}, status);
}

/// Runs a handler's work and turns every failure into a JSON error with its status.
template <class F>
void answer(httplib::Response& res, F work) {
  try {
    work();
  } catch (const StudioError& e) {
    send_error(res, e.status(), e.code(), e.what());
  } catch (const Error& e) {
    send_error(res, status_of(e.code()), error_code_name(e.code()), e.what());
  } catch (const json::exception& e) {
    send_error(res, 400, "usage", std::string("invalid request: ") + e.what());
  } catch (const std::exception& e) {
    const auto m = torch_message(e);
    if (is_out_of_memory(m)) {
      send_error(res, 503, "device", "out of memory: " + m);
    } else {
      spdlog::error("internal error: {}", m);
      send_error(res, 500, "internal", "internal error: " + m);
    }
  }
}

json body_json(const httplib::Request& req) {
  // Only JSON: a page on another site can post a form or plain text here without asking, but not
  // JSON (the browser would ask first, and this server does not say yes).
  if (req.get_header_value("Content-Type").rfind("application/json", 0) != 0) {
    throw StudioError(415, "usage", "send the request as JSON (Content-Type: application/json)");
  }
  if (req.body.empty()) return json::object();
  try {
    return json::parse(req.body);
  } catch (const json::parse_error&) {
    throw usage_error("the request body is not JSON (send Content-Type: application/json)");
  }
}

void send_download(httplib::Response& res, const Download& d) {
  const bool picture = d.content_type.rfind("image/", 0) == 0;
  res.set_header("Content-Disposition", std::string(picture ? "inline" : "attachment") +
                                            "; filename=\"" + d.filename + "\"");
  res.set_header("Cache-Control", "no-store");
  res.set_content(d.bytes, d.content_type.c_str());
}

/// Equal in time whatever the first difference (a token is not guessed byte by byte).
bool same_secret(const std::string& a, const std::string& b) {
  if (b.empty()) return false;
  unsigned diff = a.size() == b.size() ? 0U : 1U;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

namespace {

/// The host part of a Host header ("127.0.0.1:8080" → "127.0.0.1", "[::1]:80" → "::1").
std::string host_of(const std::string& header) {
  if (!header.empty() && header.front() == '[') {
    const auto end = header.find(']');
    return end == std::string::npos ? header : header.substr(1, end - 1);
  }
  return header.substr(0, header.find(':'));
}

/// Why a browser's request may not reach the API, or empty. Without a token the server trusts
/// loopback only, so a request must name a loopback host (a web page whose name was made to point
/// at 127.0.0.1 — DNS rebinding — names its own) and come from this server's own page (another
/// site's page may send a request but carries its own Origin).
std::string foreign_request(const httplib::Request& req) {
  const auto host = req.get_header_value("Host");
  if (!is_loopback_host(host_of(host))) {
    return "this server answers requests for 127.0.0.1 or localhost only, not '" + host +
           "' (serve --token lets other names in)";
  }
  const auto origin = req.get_header_value("Origin");
  if (!origin.empty() && origin != "http://" + host) {
    return "requests from another site's page ('" + origin + "') are refused";
  }
  return {};
}

}  // namespace

struct Server::Impl {
  explicit Impl(const ServeOptions& o) : options(o), studio(o) {}
  ServeOptions options;
  Studio studio;
  httplib::Server http;
  int port = 0;
  std::atomic<bool> stop_requested{false}, listening{false}, listen_returned{false};

  void routes();
};

void Server::Impl::routes() {
  // A keep-alive connection holds a thread between its requests (a page polling its jobs does),
  // and a waiting preview holds one too: far more threads than previews may wait, so that a
  // job's status or its cancel is always answered.
  http.new_task_queue = [] { return new httplib::ThreadPool(32); };
  // A little more than the largest upload: httplib answers 413 itself beyond it.
  http.set_payload_max_length(static_cast<size_t>(options.max_upload_bytes) + (64 << 10));
  // httplib writes headers and body in separate sends: without TCP_NODELAY each answer waits
  // for the client's delayed ACK (40 ms a preview, measured by bench/serve_load.py).
  http.set_tcp_nodelay(true);
  http.set_keep_alive_max_count(100);  // a polling page reconnects every 50 s, not every 2.5 s
  http.set_read_timeout(30, 0);
  http.set_write_timeout(30, 0);
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (options.token.empty()) {
      const auto why = foreign_request(req);
      if (why.empty()) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 403, "forbidden", why);
      return httplib::Server::HandlerResponse::Handled;
    }
    const auto header = req.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    const bool ok = (header.rfind(bearer, 0) == 0 &&
                     same_secret(header.substr(bearer.size()), options.token)) ||
                    same_secret(req.get_param_value("token"), options.token);
    if (ok) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, "token",
               "missing or wrong token: send the header 'Authorization: Bearer TOKEN' (serve "
               "--token)");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, 413, "too_large", "the request body is too large (serve --max-upload-mb)");
    } else if (res.status == 404 || res.status == 405) {
      send_error(res, 404, "not_found",
                 "no such endpoint: " + req.method + " " + req.path + " (GET /api/info)");
    } else {
      send_error(res, res.status, "http",
                 "the request could not be read (an upload is the picture's bytes with "
                 "Content-Type: image/png or image/jpeg)");
    }
  });
  http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("{} {} {}", req.method, req.path, res.status);
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    // Everything the page needs is in it: nothing may come from elsewhere.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
                   "script-src 'unsafe-inline'; connect-src 'self'");
    res.set_content(kPageHtml, "text/html; charset=utf-8");
  });
  http.Get("/api/info", [this](const httplib::Request&, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.info()); });
  });
  http.Post("/api/latents", [this](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.add_seed(body_json(req)), 201); });
  });
  http.Get("/api/latents", [this](const httplib::Request&, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.latents()); });
  });
  http.Get(R"(/api/latents/([0-9a-f]+))",
           [this](const httplib::Request& req, httplib::Response& res) {
             answer(res, [&] { send_json(res, studio.latent(req.matches[1])); });
           });
  http.Get(R"(/api/latents/([0-9a-f]+)/([a-z.]+))", [this](const httplib::Request& req,
                                                           httplib::Response& res) {
    answer(res, [&] { send_download(res, studio.latent_file(req.matches[1], req.matches[2])); });
  });
  http.Post("/api/photos", [this](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] {
      json params = json::object();
      for (const auto& [key, value] : req.params) {
        if (key == "token") continue;
        if (key == "steps") {
          try {
            params[key] = std::stod(value);
          } catch (const std::exception&) {
            throw usage_error("invalid 'steps' '" + value + "': expected a whole number");
          }
        } else {
          params[key] = value;
        }
      }
      // The picture's bytes with an image type (a form from another site cannot send that).
      if (req.get_header_value("Content-Type").rfind("image/", 0) != 0) {
        throw StudioError(415, "usage",
                          "send the picture's bytes as they are with its type, e.g. curl "
                          "--data-binary @face.png -H 'Content-Type: image/png'");
      }
      send_json(res, studio.add_photo(req.body, params), 202);
    });
  });
  http.Post("/api/preview", [this](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.preview(body_json(req))); });
  });
  http.Post("/api/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.add_job(body_json(req)), 202); });
  });
  http.Get("/api/jobs", [this](const httplib::Request&, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.jobs()); });
  });
  http.Get(R"(/api/jobs/([0-9a-f]+))", [this](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { send_json(res, studio.job(req.matches[1])); });
  });
  http.Delete(R"(/api/jobs/([0-9a-f]+))",
              [this](const httplib::Request& req, httplib::Response& res) {
                answer(res, [&] { send_json(res, studio.cancel(req.matches[1])); });
              });
  http.Get(R"(/api/jobs/([0-9a-f]+)/files/([a-z]+))", [this](const httplib::Request& req,
                                                             httplib::Response& res) {
    answer(res, [&] { send_download(res, studio.job_file(req.matches[1], req.matches[2])); });
  });
}

Server::Server(const ServeOptions& options) {
  if (!is_loopback_host(options.host) && options.token.empty()) {
    throw usage_error("--host " + options.host +
                      " lets other machines in: give --token SECRET too (clients then send "
                      "'Authorization: Bearer SECRET')");
  }
  if (options.port < 0 || options.port > 65535) {
    throw usage_error("invalid --port " + std::to_string(options.port) + ": must be 0 to 65535");
  }
  impl_ = std::make_unique<Impl>(options);
  impl_->routes();
  if (options.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(options.host);
  } else {
    impl_->port = impl_->http.bind_to_port(options.host, options.port) ? options.port : -1;
  }
  if (impl_->port < 0) {
    throw usage_error("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                      ": the port is taken or the address is not this machine's (--host, --port)");
  }
}

Server::~Server() { stop(); }

int Server::port() const { return impl_->port; }

bool Server::listen() {
  impl_->listening = true;
  bool ok = true;
  if (!impl_->stop_requested) ok = impl_->http.listen_after_bind();
  impl_->listen_returned = true;
  return ok;
}

void Server::stop() {
  if (!impl_) return;
  impl_->stop_requested = true;
  // httplib's stop() does nothing before its listen loop runs: wait for the loop (or for
  // listen() to see the request) so that a stop asked for early is not lost.
  while (impl_->listening && !impl_->listen_returned && !impl_->http.is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->http.stop();
  impl_->studio.shutdown();
}

}  // namespace styleclip
