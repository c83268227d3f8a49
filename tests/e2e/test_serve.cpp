// `styleclip serve`: every endpoint of the JSON API over real HTTP on loopback, its error paths,
// and its answers checked against the CLI's own outputs for the same settings (the demonstration
// bundle: it has global statistics and a mapper).
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/serve/server.h>

#include <chrono>
#include <csignal>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fstream>
#include <thread>

#include <httplib.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

fs::path demo_bundle() { return fs::path(STYLECLIP_SOURCE_DIR) / "models" / "demo"; }

/// A server on a free loopback port, serving on its own thread.
class Running {
 public:
  explicit Running(ServeOptions o) : server_(o), client_("127.0.0.1", server_.port()) {
    thread_ = std::thread([this] { server_.listen(); });
    client_.set_read_timeout(120, 0);
    // listen() has begun once a request is answered.
    for (int i = 0; i < 200 && !client_.Get("/"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Running() {
    server_.stop();
    thread_.join();
  }
  httplib::Client& http() { return client_; }
  int port() const { return server_.port(); }

 private:
  Server server_;
  httplib::Client client_;
  std::thread thread_;
};

json parse(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no answer";
  if (!r) return json();
  return json::parse(r->body);
}

/// A PNG's pixels [H, W, 3] uint8.
torch::Tensor png_pixels(const std::string& bytes, const fs::path& dir) {
  const auto path = dir / "decoded.png";
  std::ofstream(path, std::ios::binary) << bytes;
  return read_image_rgb(path);
}

std::string unbase64(const std::string& s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : (c == '/' ? 63 : -1);
  };
  std::string out;
  int bits = 0, acc = 0;
  for (const char c : s) {
    const int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string data_url_bytes(const json& preview) {
  const auto url = preview.at("image").get<std::string>();
  const std::string prefix = "data:image/png;base64,";
  EXPECT_EQ(url.rfind(prefix, 0), 0U);
  return unbase64(url.substr(prefix.size()));
}

class Serve : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(demo_bundle() / "manifest.json")) GTEST_SKIP() << "models/demo is absent";
  }
  ServeOptions options() {
    ServeOptions o;
    o.models = demo_bundle();
    o.out = tmp_ / "serve-out";
    o.port = 0;
    return o;
  }
  json seed(Running& s, int n) {
    auto r = s.http().Post("/api/latents", json({{"seed", n}}).dump(), "application/json");
    EXPECT_EQ(r->status, 201) << r->body;
    return json::parse(r->body);
  }
  json wait_job(Running& s, const std::string& id) {
    for (int i = 0; i < 1200; ++i) {
      const auto j = parse(s.http().Get("/api/jobs/" + id));
      if (j["state"] != "queued" && j["state"] != "running") return j;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "job " << id << " did not end";
    return json();
  }
  TempDir tmp_;
};

TEST_F(Serve, InfoListsEnginesMappersAndLimits) {
  Running s(options());
  const auto info = parse(s.http().Get("/api/info"));
  EXPECT_EQ(info["models"]["resolution"], 64);
  EXPECT_EQ(info["mappers"], json({"red"}));
  EXPECT_EQ(info["global"]["available"], true);
  EXPECT_EQ(info["global"]["channels"], 824);
  std::set<std::string> names;
  for (const auto& e : info["engines"]) {
    names.insert(e["name"].get<std::string>());
    for (const auto& o : e["options"]) {  // options that write or read files are not offered
      EXPECT_NE(o["name"], "frames");
      EXPECT_NE(o["name"], "target-image");
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"optimize", "mapper", "global"}));
  // The page is served, whole and self-contained.
  const auto page = s.http().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("id=\"strength\""), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos);
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
}

TEST_F(Serve, SeedLatentMatchesTheCliGenerate) {
  Running s(options());
  const auto l = seed(s, 3);
  EXPECT_EQ(l["name"], "seed0003");
  const auto png = s.http().Get(l["image"].get<std::string>());
  ASSERT_EQ(png->status, 200);
  EXPECT_EQ(png->get_header_value("Content-Type"), "image/png");
  const auto out = tmp_ / "gen";
  const auto r = test::styleclip(
      {"generate", "--models", demo_bundle().string(), "--seed", "3", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(
      torch::equal(png_pixels(png->body, tmp_.path()), read_image_rgb(out / "seed0003.png")));
  // The latent downloads as a torch.save file holding what generate wrote.
  const auto pt = s.http().Get(l["download"].get<std::string>());
  ASSERT_EQ(pt->status, 200);
  EXPECT_NE(pt->get_header_value("Content-Disposition").find("seed0003.latent.pt"),
            std::string::npos);
  std::ofstream(tmp_ / "dl.pt", std::ios::binary) << pt->body;
  EXPECT_TRUE(test::tensors_close(read_tensor_file(tmp_ / "dl.pt"),
                                  read_tensor_file(out / "seed0003.latent.pt"), 0));
  // Listed, found by id; bad requests named.
  EXPECT_EQ(parse(s.http().Get("/api/latents")).size(), 1U);
  EXPECT_EQ(parse(s.http().Get("/api/latents/" + l["id"].get<std::string>()))["name"], "seed0003");
  const auto missing = s.http().Get("/api/latents/abcdef123456");
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(json::parse(missing->body)["code"], "not_found");
  EXPECT_EQ(s.http().Get("/api/latents/" + l["id"].get<std::string>() + "/secret.txt")->status,
            404);
  for (const char* bad : {R"({"seed": -1})", R"({"seed": "x"})", R"({"sede": 1})", R"([1])",
                          R"({"seed": 1, "truncation": 5})", "{oops"}) {
    const auto r2 = s.http().Post("/api/latents", bad, "application/json");
    EXPECT_EQ(r2->status, 400) << bad;
    EXPECT_EQ(json::parse(r2->body)["code"], "usage") << bad;
    EXPECT_FALSE(json::parse(r2->body)["error"].get<std::string>().empty());
  }
}

TEST_F(Serve, PreviewEqualsTheCliGlobalEdit) {
  Running s(options());
  const auto l = seed(s, 5);
  const json request = {{"latent", l["id"]},
                        {"neutral", "a shape"},
                        {"target", "a blue shape"},
                        {"strength", 4.0},
                        {"threshold", 0.1}};
  const auto p = parse(s.http().Post("/api/preview", request.dump(), "application/json"));
  ASSERT_TRUE(p.contains("image")) << p.dump();
  const auto out = tmp_ / "cli";
  const auto r =
      test::styleclip({"edit", "--models", demo_bundle().string(), "--seed", "5", "--method",
                       "global", "--neutral", "a shape", "--text", "a blue shape", "--strength",
                       "4", "--threshold", "0.1", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto side = json::parse(test::read_text(out / "seed0005.a-blue-shape.global.json"));
  EXPECT_EQ(p["channels"], side["options"]["channels"]);
  EXPECT_TRUE(torch::equal(png_pixels(data_url_bytes(p), tmp_.path()),
                           read_image_rgb(out / "seed0005.a-blue-shape.global.png")));
  // Strength 0 gives the image back; another strength another image; auto picks a β.
  auto zero = request;
  zero["strength"] = 0;
  const auto p0 = parse(s.http().Post("/api/preview", zero.dump(), "application/json"));
  const auto source = s.http().Get(l["image"].get<std::string>());
  EXPECT_TRUE(torch::equal(png_pixels(data_url_bytes(p0), tmp_.path()),
                           png_pixels(source->body, tmp_.path())));
  auto automatic = request;
  automatic["threshold"] = "auto";
  const auto pa = parse(s.http().Post("/api/preview", automatic.dump(), "application/json"));
  EXPECT_GE(pa["threshold"].get<double>(), 0.1);
  EXPECT_GT(pa["channels"].get<int>(), 0);
  // Mistakes, each named.
  const std::vector<std::pair<json, int>> bad = {
      {{{"latent", l["id"]}, {"neutral", ""}, {"target", "x"}}, 400},
      {{{"latent", l["id"]}, {"neutral", "a shape"}, {"target", " "}}, 400},
      {{{"latent", l["id"]}, {"neutral", "a"}, {"target", "b"}, {"threshold", 2}}, 400},
      {{{"latent", l["id"]}, {"neutral", "a"}, {"target", "b"}, {"strength", "big"}}, 400},
      {{{"latent", l["id"]}, {"neutral", "a"}, {"target", "b"}, {"alpha", 1}}, 400},
      {{{"latent", "000000000000"}, {"neutral", "a"}, {"target", "b"}}, 404},
      {{{"latent", l["id"]}, {"neutral", std::string(2000, 'a')}, {"target", "b"}}, 400},
  };
  for (const auto& [body, status] : bad) {
    const auto r2 = s.http().Post("/api/preview", body.dump(), "application/json");
    EXPECT_EQ(r2->status, status) << body.dump() << " → " << r2->body;
  }
}

// Twelve previews at once from one client (a fast drag without the page's own pacing): each is
// answered, replaced by a newer one (409), or refused because eight already wait (503 busy);
// the newest settings get a picture.
TEST_F(Serve, ConcurrentPreviewsFromOneClientEndWithTheNewest) {
  Running s(options());
  const auto l = seed(s, 1);
  std::vector<int> statuses(12);
  std::vector<std::string> codes(12);
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", s.port());
      const json body = {{"latent", l["id"]},
                         {"neutral", "a shape"},
                         {"target", "a red shape"},
                         {"strength", 0.5 * i},
                         {"client", "slider"}};
      const auto r = c.Post("/api/preview", body.dump(), "application/json");
      statuses[static_cast<size_t>(i)] = r ? r->status : -1;
      if (r && r->status != 200) codes[static_cast<size_t>(i)] = json::parse(r->body)["code"];
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (size_t i = 0; i < statuses.size(); ++i) {
    const int st = statuses[i];
    EXPECT_TRUE((st == 200) || (st == 409 && codes[i] == "superseded") ||
                (st == 503 && codes[i] == "busy"))
        << st << " " << codes[i];
    ok += st == 200 ? 1 : 0;
  }
  EXPECT_GE(ok, 1);
  // Once the burst is over, the same client's next preview is answered.
  const json last = {
      {"latent", l["id"]}, {"neutral", "a shape"}, {"target", "a red shape"}, {"client", "slider"}};
  EXPECT_EQ(s.http().Post("/api/preview", last.dump(), "application/json")->status, 200);
}

TEST_F(Serve, JobsMatchTheCliAndOfferTheirFiles) {
  Running s(options());
  const auto l = seed(s, 2);
  const json body = {{"latent", l["id"]},
                     {"method", "optimize"},
                     {"text", "a green shape"},
                     {"options", {{"steps", 6}}}};
  const auto posted = s.http().Post("/api/jobs", body.dump(), "application/json");
  ASSERT_EQ(posted->status, 202) << posted->body;
  const auto job = wait_job(s, json::parse(posted->body)["id"]);
  ASSERT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["progress"]["done"], 6);
  const auto out = tmp_ / "cli";
  const auto r =
      test::styleclip({"edit", "--models", demo_bundle().string(), "--seed", "2", "--text",
                       "a green shape", "--steps", "6", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto cli = json::parse(test::read_text(out / "seed0002.a-green-shape.optimize.json"));
  EXPECT_NEAR(job["result"]["metrics"]["clip_similarity_after"].get<double>(),
              cli["metrics"]["clip_similarity_after"].get<double>(), 1e-4);
  const auto image = s.http().Get(job["result"]["files"]["image"].get<std::string>());
  ASSERT_EQ(image->status, 200);
  const auto diff = (png_pixels(image->body, tmp_.path()).to(torch::kInt) -
                     read_image_rgb(out / "seed0002.a-green-shape.optimize.png").to(torch::kInt))
                        .abs()
                        .max()
                        .item<int>();
  EXPECT_LE(diff, 1);
  // The sidecar has the CLI's fields; the edited latent is a new latent to edit further.
  const auto side =
      json::parse(s.http().Get(job["result"]["files"]["sidecar"].get<std::string>())->body);
  EXPECT_EQ(side["command"], "serve");
  EXPECT_EQ(side["engine"], "optimize");
  EXPECT_EQ(side["status"], "ok");
  const auto latent_pt = s.http().Get(job["result"]["files"]["latent"].get<std::string>());
  EXPECT_NE(latent_pt->get_header_value("Content-Disposition").find("attachment"),
            std::string::npos);
  const auto edited = job["result"]["latent"];
  EXPECT_EQ(edited["source"], "edit");
  // A mapper job by the bundle's mapper name, and a global one.
  const json mapper = {
      {"latent", edited["id"]}, {"method", "mapper"}, {"options", {{"mapper", "red"}}}};
  const auto m =
      wait_job(s, parse(s.http().Post("/api/jobs", mapper.dump(), "application/json"))["id"]);
  EXPECT_EQ(m["state"], "done") << m.dump();
  EXPECT_EQ(m["result"]["prompt"], "a red shape");
  // An edit of an edit is named after the seed and its own prompt (a chain stays short).
  EXPECT_EQ(m["result"]["latent"]["name"], "seed0002.a-red-shape");
  const json global = {{"latent", l["id"]},
                       {"method", "global"},
                       {"text", "a blue shape"},
                       {"options", {{"neutral", "a shape"}, {"threshold", "auto"}}}};
  const auto g =
      wait_job(s, parse(s.http().Post("/api/jobs", global.dump(), "application/json"))["id"]);
  EXPECT_EQ(g["state"], "done") << g.dump();
  EXPECT_TRUE(g["result"]["files"].contains("styles"));
  EXPECT_EQ(parse(s.http().Get("/api/jobs")).size(), 3U);
  // Files that are not there, and keys that are not files.
  const auto id = job["id"].get<std::string>();
  EXPECT_EQ(s.http().Get("/api/jobs/" + id + "/files/styles")->status, 404);
  EXPECT_EQ(s.http().Get("/api/jobs/" + id + "/files/..%2F..%2Fetc")->status, 404);
  EXPECT_EQ(s.http().Get("/api/jobs/" + id + "/files/../../../etc/passwd")->status, 404);
  EXPECT_EQ(s.http().Get("/api/jobs/0123456789ab")->status, 404);
  // Every file written lies under the server's folder.
  for (const auto& e : fs::recursive_directory_iterator(tmp_ / "serve-out"))
    EXPECT_EQ(e.path().string().rfind((tmp_ / "serve-out").string(), 0), 0U);
}

TEST_F(Serve, BadJobRequestsAreRefusedBeforeQueueing) {
  Running s(options());
  const auto l = seed(s, 0);
  const auto id = l["id"].get<std::string>();
  const std::vector<std::pair<json, std::string>> bad = {
      {{{"latent", id}, {"method", "paint"}, {"text", "x"}}, "--method"},
      {{{"latent", id}, {"method", "optimize"}}, "'text' is empty"},
      {{{"latent", id}, {"method", "optimize"}, {"text", "x"}, {"options", {{"stepz", 3}}}},
       "unknown option 'stepz'"},
      {{{"latent", id}, {"method", "optimize"}, {"text", "x"}, {"options", {{"steps", "many"}}}},
       "--steps"},
      {{{"latent", id}, {"method", "optimize"}, {"text", "x"}, {"options", {{"frames", 2}}}},
       "not offered"},
      {{{"latent", id}, {"method", "optimize"}, {"text", "x"}, {"options", {{"mode", "free"}}}},
       "average latent"},
      {{{"latent", id}, {"method", "mapper"}, {"options", {{"mapper", "/etc/passwd"}}}},
       "unknown mapper '/etc/passwd'"},
      {{{"latent", id}, {"method", "global"}, {"text", "x"}}, "--neutral"},
      {{{"latent", id}, {"method", "optimize"}, {"text", "x"}, {"options", 3}}, "'options'"},
  };
  for (const auto& [body, words] : bad) {
    const auto r = s.http().Post("/api/jobs", body.dump(), "application/json");
    EXPECT_EQ(r->status, 400) << body.dump() << " → " << r->body;
    EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find(words), std::string::npos)
        << r->body;
  }
  EXPECT_EQ(parse(s.http().Get("/api/jobs")).size(), 0U);
  const auto r = s.http().Post(
      "/api/jobs", json({{"latent", "0123456789ab"}, {"text", "x"}}).dump(), "application/json");
  EXPECT_EQ(r->status, 404);
}

TEST_F(Serve, JobsCancelAndPreviewsOvertakeThem) {
  auto o = options();
  o.max_waiting_jobs = 1;
  Running s(o);
  const auto l = seed(s, 4);
  const json endless = {{"latent", l["id"]},
                        {"method", "optimize"},
                        {"text", "a red shape"},
                        {"options", {{"steps", 100000}}}};
  const auto first = parse(s.http().Post("/api/jobs", endless.dump(), "application/json"));
  // Wait until it runs, then queue one more: the queue holds one, so a third is refused.
  for (int i = 0;
       i < 400 &&
       parse(s.http().Get("/api/jobs/" + first["id"].get<std::string>()))["state"] != "running";
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  const auto second = parse(s.http().Post("/api/jobs", endless.dump(), "application/json"));
  EXPECT_EQ(second["state"], "queued");
  const auto third = s.http().Post("/api/jobs", endless.dump(), "application/json");
  EXPECT_EQ(third->status, 503);
  EXPECT_EQ(json::parse(third->body)["code"], "busy");
  // A preview is answered while the job is still running: it went in between the job's steps.
  const json request = {{"latent", l["id"]}, {"neutral", "a shape"}, {"target", "a red shape"}};
  const auto p = s.http().Post("/api/preview", request.dump(), "application/json");
  EXPECT_EQ(p->status, 200);
  EXPECT_EQ(parse(s.http().Get("/api/jobs/" + first["id"].get<std::string>()))["state"], "running");
  // Cancel the waiting one (at once: it frees its place), then the running one; neither leaves
  // files.
  const auto c2 = s.http().Delete("/api/jobs/" + second["id"].get<std::string>());
  EXPECT_EQ(c2->status, 200);
  EXPECT_EQ(json::parse(c2->body)["state"], "cancelled");
  EXPECT_EQ(s.http().Delete("/api/jobs/" + second["id"].get<std::string>())->status, 409);
  const auto third_again = s.http().Post("/api/jobs", endless.dump(), "application/json");
  EXPECT_EQ(third_again->status, 202) << third_again->body;
  EXPECT_EQ(s.http()
                .Delete("/api/jobs/" + json::parse(third_again->body)["id"].get<std::string>())
                ->status,
            200);
  const auto c1 = s.http().Delete("/api/jobs/" + first["id"].get<std::string>());
  EXPECT_EQ(c1->status, 200);
  const auto j1 = wait_job(s, first["id"]);
  const auto j2 = wait_job(s, second["id"]);
  EXPECT_EQ(j1["state"], "cancelled");
  EXPECT_EQ(j2["state"], "cancelled");
  EXPECT_LT(j1["progress"]["done"].get<int>(), 100000);
  EXPECT_FALSE(fs::exists(tmp_ / "serve-out" / "results" / first["id"].get<std::string>()));
  const auto again = s.http().Delete("/api/jobs/" + first["id"].get<std::string>());
  EXPECT_EQ(again->status, 409);
  EXPECT_EQ(json::parse(again->body)["code"], "ended");
}

TEST_F(Serve, PhotosAreInvertedAndUploadsLimited) {
  auto o = options();
  o.max_upload_bytes = 64 << 10;
  o.max_pixels = 100 * 100;
  Running s(o);
  const auto l = seed(s, 6);
  const auto png = s.http().Get(l["image"].get<std::string>())->body;  // 64 × 64, aligned
  auto r = s.http().Post("/api/photos?aligned=true&steps=20", png, "image/png");
  ASSERT_EQ(r->status, 202) << r->body;
  const auto job = wait_job(s, json::parse(r->body)["id"]);
  ASSERT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["progress"]["total"], 20);
  EXPECT_GT(job["result"]["psnr"].get<double>(), 15.0);
  const auto latent = job["result"]["latent"];
  EXPECT_EQ(latent["source"], "photo");
  EXPECT_EQ(s.http().Get(latent["target"].get<std::string>())->status, 200);
  // Refusals: no face detector in this bundle, not a picture, too many bytes, too many pixels,
  // a form post, bad options.
  r = s.http().Post("/api/photos", png, "image/png");
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(r->body.find("aligned=true"), std::string::npos) << r->body;
  r = s.http().Post("/api/photos?aligned=true", "just text, no picture", "image/png");
  EXPECT_EQ(r->status, 422);
  r = s.http().Post("/api/photos?aligned=true", std::string(200 << 10, 'x'), "image/png");
  EXPECT_EQ(r->status, 413);
  const auto big = encode_png(torch::zeros({3, 128, 128}));
  r = s.http().Post("/api/photos?aligned=true", big, "image/png");
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("--max-pixels"), std::string::npos) << r->body;
  r = s.http().Post("/api/photos?aligned=true", "a=b", "application/x-www-form-urlencoded");
  EXPECT_EQ(r->status, 415);
  for (const char* q : {"?aligned=true&steps=0", "?aligned=true&steps=x", "?aligned=maybe",
                        "?aligned=true&with=pti", "?color=red"}) {
    r = s.http().Post(std::string("/api/photos") + q, png, "image/png");
    EXPECT_EQ(r->status, 400) << q << " → " << r->body;
  }
  r = s.http().Post("/api/photos?aligned=true", "", "image/png");
  EXPECT_EQ(r->status, 400);
  r = s.http().Post("/api/photos?aligned=true", std::string("RIFF\x10\0\0\0WEBPVP8 ", 16),
                    "image/webp");
  EXPECT_EQ(r->status, 422);  // only formats whose size the header tells before decoding
  EXPECT_NE(r->body.find("PNG or JPEG"), std::string::npos) << r->body;
  // Nothing refused was kept, and the accepted one went when its job ended (its crop and
  // inversion are what is kept).
  EXPECT_TRUE(test::files_with(tmp_ / "serve-out" / "uploads", "").empty());
  EXPECT_EQ(test::files_with(tmp_ / "serve-out" / "photos", ".latent.pt").size(), 1U);
}

TEST_F(Serve, TokenGuardsTheApiAndOtherHostsNeedOne) {
  auto o = options();
  o.token = "s3cret";
  Running s(o);
  auto r = s.http().Get("/api/info");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["code"], "token");
  EXPECT_EQ(s.http().Get("/api/info", {{"Authorization", "Bearer wrong!"}})->status, 401);
  EXPECT_EQ(s.http().Get("/api/info", {{"Authorization", "Bearer s3cret"}})->status, 200);
  EXPECT_EQ(s.http().Get("/api/info?token=s3cret")->status, 200);
  EXPECT_EQ(s.http().Get("/")->status, 200);  // the page itself holds nothing private
  auto other = options();
  other.host = "0.0.0.0";
  try {
    Server refused(other);
    ADD_FAILURE() << "bound to 0.0.0.0 without a token";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("--token"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("192.168.1.2"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
}

// Without a token only this machine's own page may use the API: another host name (a name made
// to point at 127.0.0.1 by another site) and another site's page are refused, and so are
// requests a page on another site could send without asking first (forms, plain text).
TEST_F(Serve, OtherSitesAndHostNamesAreRefused) {
  Running s(options());
  auto r = s.http().Get("/api/info", {{"Host", "evil.example:80"}});
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(json::parse(r->body)["code"], "forbidden");
  r = s.http().Post("/api/latents", {{"Origin", "http://evil.example"}}, R"({"seed": 1})",
                    "application/json");
  EXPECT_EQ(r->status, 403);
  r = s.http().Post("/api/latents", R"({"seed": 1})", "text/plain");
  EXPECT_EQ(r->status, 415);
  r = s.http().Post("/api/latents", {{"Origin", "http://127.0.0.1:" + std::to_string(s.port())}},
                    R"({"seed": 1})", "application/json");
  EXPECT_EQ(r->status, 201) << r->body;  // the page's own origin
  EXPECT_EQ(s.http().Get("/api/info", {{"Host", "localhost:" + std::to_string(s.port())}})->status,
            200);
  // With a token, any name may be used (the token is the guard).
  auto o = options();
  o.token = "t0k";
  Running guarded(o);
  EXPECT_EQ(guarded.http()
                .Get("/api/info", {{"Host", "studio.example"}, {"Authorization", "Bearer t0k"}})
                ->status,
            200);
}

// A bundle without global statistics serves everything else; previews and global jobs are refused
// naming the fix (409 bundle), and the page learns it from /api/info. Bad serve options fail the
// command before it listens.
TEST_F(Serve, WhatTheBundleOrTheOptionsCannotDo) {
  SKIP_UNLESS_BUNDLE("tiny");
  auto o = options();
  o.models = test::testdata("tiny");
  Running s(o);
  EXPECT_EQ(parse(s.http().Get("/api/info"))["global"]["available"], false);
  const auto l = seed(s, 0);
  const json preview = {{"latent", l["id"]}, {"neutral", "a face"}, {"target", "a smiling face"}};
  auto r = s.http().Post("/api/preview", preview.dump(), "application/json");
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(json::parse(r->body)["code"], "bundle");
  EXPECT_NE(r->body.find("global prepare"), std::string::npos) << r->body;
  const json global = {{"latent", l["id"]},
                       {"method", "global"},
                       {"text", "a smiling face"},
                       {"options", {{"neutral", "a face"}}}};
  r = s.http().Post("/api/jobs", global.dump(), "application/json");
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(json::parse(r->body)["code"], "bundle");
  const json mapper = {{"latent", l["id"]}, {"method", "mapper"}, {"options", {{"mapper", "red"}}}};
  r = s.http().Post("/api/jobs", mapper.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("offers: none"), std::string::npos) << r->body;
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--mapper", (tmp_ / "missing.mapper.pt").string()},
        std::vector<std::string>{"--max-upload-mb", "0"},
        std::vector<std::string>{"--port", "70000"}, std::vector<std::string>{"--max-jobs", "0"}}) {
    std::vector<std::string> args = {"serve", "--models", demo_bundle().string(), "--port",
                                     "0",     "--out",    (tmp_ / "o").string()};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto run = test::styleclip(args);
    EXPECT_EQ(run.code, 2) << bad[0] << ": " << run.err;
    EXPECT_NE(run.err.find(bad[0]), std::string::npos) << run.err;
    EXPECT_EQ(run.out.find("listening"), std::string::npos);
  }
}

// A stop asked for before listening is not lost: listen() returns at once.
TEST_F(Serve, StopBeforeListenIsKept) {
  Server server(options());
  server.stop();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(server.listen());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST_F(Serve, UnknownEndpointsAnswerJson) {
  Running s(options());
  for (const char* path : {"/api/nothing", "/api/jobs/XYZ", "/api/latents/../../etc/passwd"}) {
    const auto r = s.http().Get(path);
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(json::parse(r->body)["code"], "not_found") << path;
  }
  EXPECT_EQ(s.http().Put("/api/jobs", "{}", "application/json")->status, 404);
}

// Clients that go away: one that stops halfway through a job request leaves no job, one that
// posts a job and leaves does not stop it, and the server answers the next client as before.
TEST_F(Serve, ClientsThatLeaveCostNothing) {
  Running s(options());
  const auto l = seed(s, 7);
  const json body = {{"latent", l["id"]},
                     {"method", "optimize"},
                     {"text", "a red shape"},
                     {"options", {{"steps", 4}}}};
  const auto text = body.dump();
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(s.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string half =
        "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(text.size()) + "\r\n\r\n" + text.substr(0, text.size() / 2);
    ASSERT_EQ(write(fd, half.data(), half.size()), static_cast<ssize_t>(half.size()));
    close(fd);
  }
  std::string id;
  {
    httplib::Client leaving("127.0.0.1", s.port());
    const auto r = leaving.Post("/api/jobs", text, "application/json");
    ASSERT_EQ(r->status, 202);
    id = json::parse(r->body)["id"];
  }  // gone before the job ends
  EXPECT_EQ(wait_job(s, id)["state"], "done");
  EXPECT_EQ(parse(s.http().Get("/api/jobs")).size(), 1U);  // the half-sent one made none
  EXPECT_EQ(s.http().Get("/api/info")->status, 200);
}

TEST_F(Serve, CommandStopsCleanlyOnCtrlC) {
  const auto out = tmp_ / "stdout.txt";
  const auto err = tmp_ / "stderr.txt";
  const int pid =
      test::start_program({STYLECLIP_BINARY, "serve", "--models", demo_bundle().string(), "--port",
                           "0", "--out", (tmp_ / "o").string()},
                          out, err);
  std::string line;
  for (int i = 0; i < 600 && line.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream f(out);
    std::getline(f, line);
  }
  ASSERT_EQ(line.rfind("listening on http://127.0.0.1:", 0), 0U) << line << test::read_text(err);
  const int port = std::stoi(line.substr(std::string("listening on http://127.0.0.1:").size()));
  httplib::Client c("127.0.0.1", port);
  const auto l = json::parse(c.Post("/api/latents", R"({"seed": 1})", "application/json")->body);
  const json endless = {
      {"latent", l["id"]}, {"text", "a red shape"}, {"options", {{"steps", 100000}}}};
  EXPECT_EQ(c.Post("/api/jobs", endless.dump(), "application/json")->status, 202);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(pid, SIGINT);
  EXPECT_EQ(test::wait_program(pid), 0) << test::read_text(err);
  EXPECT_NE(test::read_text(err).find("stopped"), std::string::npos);
  // Refused at the start: another host without a token (exit 2, naming the fix).
  const auto r = test::styleclip(
      {"serve", "--models", demo_bundle().string(), "--host", "0.0.0.0", "--port", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--token"), std::string::npos) << r.err;
}

// The page in a real browser (headless Chromium, where installed: .ci/run installs it), driven
// over the DevTools protocol by tests/browser/drive_serve_page.py: it clicks into the text
// fields and types a prompt key by key, drags the strength and threshold sliders with the mouse,
// and sees the preview and the channel count change; then runs a global and an optimisation job
// from their buttons, and uploads a picture through the file chooser to be inverted. The
// screenshot is kept beside the test binary (serve-page.png).
TEST(ServePage, ChromiumTypesAPromptDragsTheSlidersRunsJobsAndUploads) {
  if (!fs::exists(demo_bundle() / "manifest.json")) GTEST_SKIP() << "models/demo is absent";
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "Chromium is not installed (apt install chromium)";
  TempDir tmp;
  const auto shot =
      fs::path(STYLECLIP_BINARY).parent_path().parent_path() / "tests" / "serve-page.png";
  fs::remove(shot);
  const auto r = test::run_program(
      {"/usr/bin/timeout", "300", STYLECLIP_PYTHON,
       std::string(STYLECLIP_SOURCE_DIR) + "/tests/browser/drive_serve_page.py", STYLECLIP_BINARY,
       demo_bundle().string(), (tmp / "work").string(), shot.string()});
  if (r.code == 77) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  const auto report = json::parse(r.out);
  EXPECT_GT(report["strength"].get<double>(), 7.0);
  EXPECT_EQ(report["jobs"].size(), 2U);
  EXPECT_EQ(report["photo"].get<std::string>().rfind("upload-", 0), 0U);
  const auto pixels = read_image_rgb(shot);
  EXPECT_GE(pixels.size(1), 1000);  // the whole page, not an empty capture
  // The same behind a token: the page takes it from the address the server prints.
  setenv("STYLECLIP_SERVE_TOKEN", "page-secret", 1);
  const auto guarded = test::run_program(
      {"/usr/bin/timeout", "300", STYLECLIP_PYTHON,
       std::string(STYLECLIP_SOURCE_DIR) + "/tests/browser/drive_serve_page.py", STYLECLIP_BINARY,
       demo_bundle().string(), (tmp / "guarded").string(), (tmp / "guarded.png").string()});
  unsetenv("STYLECLIP_SERVE_TOKEN");
  EXPECT_EQ(guarded.code, 0) << guarded.err << guarded.out;
}

}  // namespace
}  // namespace styleclip
