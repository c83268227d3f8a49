// What `styleclip serve` does (studio.h): the models once, latents by id, previews on the model
// thread before any job, jobs through the same engines and sidecars as `styleclip edit`.
#include <styleclip/serve/studio.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <future>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <random>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/engines/engine.h>
#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/photo.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// The most recently used this many latents and the newest finished jobs are kept (their files stay
/// on disk): a server that runs for weeks does not grow without bound.
constexpr size_t kKeepLatents = 256;
constexpr size_t kKeepJobs = 512;
/// Text directions (79 templates through CLIP) kept for the previews of a slider's drag.
constexpr size_t kKeepDirections = 64;
constexpr size_t kMaxTextLength = 1000;

/// Engine options a request cannot set: they write files beside the output or need pictures
/// from the client's disk (the CLI offers them).
const std::set<std::string>& not_offered() {
  static const std::set<std::string> names = {"--frames",  "--strength-sweep", "--threshold-sweep",
                                              "--combine", "--target-image",   "--neutral-image"};
  return names;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

/// Usage error for a field the request may not carry (a mistyped name is not silently ignored).
void only_fields(const json& request, const std::vector<std::string>& allowed) {
  if (!request.is_object()) throw usage_error("the request body must be a JSON object");
  for (const auto& [key, value] : request.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw usage_error("unknown field '" + key + "' (expected: " + list + ")");
  }
}

std::string text_field(const json& request, const std::string& key, const std::string& fallback) {
  if (!request.contains(key)) return fallback;
  const auto& v = request.at(key);
  if (!v.is_string()) throw usage_error("invalid '" + key + "': expected a string");
  const auto s = v.get<std::string>();
  if (s.size() > kMaxTextLength) {
    throw usage_error("invalid '" + key + "': longer than " + std::to_string(kMaxTextLength) +
                      " characters");
  }
  return s;
}

double number_field(const json& request, const std::string& key, double fallback) {
  if (!request.contains(key)) return fallback;
  const auto& v = request.at(key);
  if (!v.is_number()) throw usage_error("invalid '" + key + "': expected a number");
  const double x = v.get<double>();
  if (!std::isfinite(x)) throw usage_error("invalid '" + key + "': expected a finite number");
  return x;
}

bool flag_field(const json& request, const std::string& key, bool fallback) {
  if (!request.contains(key)) return fallback;
  const auto& v = request.at(key);
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string() && (v == "true" || v == "1")) return true;
  if (v.is_string() && (v == "false" || v == "0")) return false;
  throw usage_error("invalid '" + key + "': expected true or false");
}

/// An engine option's value from JSON as the CLI would have read it from the command line.
std::string option_text(const std::string& key, const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    std::ostringstream s;
    s.precision(17);
    s << v.get<double>();
    return s.str();
  }
  throw usage_error("invalid option '" + key + "': expected a string, number or boolean");
}

std::string base64(const std::string& bytes) {
  static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += chars[(n >> 18) & 63];
    out += chars[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? chars[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? chars[n & 63] : '=';
  }
  return out;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw StudioError(410, "gone", "the file of this result is gone from the server's disk");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// The picture formats an upload may be, by their first bytes (the name a client sends is not
/// trusted, and nothing it names reaches the disk): PNG and JPEG, whose size the header tells
/// before anything is decoded.
std::string picture_extension(const std::string& bytes) {
  auto starts = [&](const std::string& magic) {
    return bytes.compare(0, magic.size(), magic) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n")) return ".png";
  if (starts("\xff\xd8\xff")) return ".jpg";
  throw input_error("the upload is not a PNG or JPEG picture");
}

/// Removes a file when it goes out of scope unless told to keep it.
class RemoveUnlessKept {
 public:
  explicit RemoveUnlessKept(fs::path path) : path_(std::move(path)) {}
  ~RemoveUnlessKept() {
    std::error_code ec;
    if (!kept_) fs::remove(path_, ec);
  }
  RemoveUnlessKept(const RemoveUnlessKept&) = delete;
  RemoveUnlessKept& operator=(const RemoveUnlessKept&) = delete;
  void keep() { kept_ = true; }

 private:
  fs::path path_;
  bool kept_ = false;
};

}  // namespace

const char* error_code_name(ExitCode code) {
  switch (code) {
    case ExitCode::kUsage:
      return "usage";
    case ExitCode::kInputUnusable:
      return "input";
    case ExitCode::kBundleInvalid:
      return "bundle";
    case ExitCode::kDevice:
      return "device";
    case ExitCode::kInterrupted:
      return "stopping";
    default:
      return "internal";
  }
}

struct Studio::Models {
  std::optional<Bundle> bundle;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::kFp32;
  std::optional<Generator> gen;
  std::optional<Clip> clip;
  std::optional<IdentityModel> identity;
  std::optional<GlobalStats> stats;
  std::map<std::string, fs::path> mappers;  ///< by name (file stem without .mapper)
  // The model thread's own: text directions by "neutral\ntarget\ntemplates", oldest first.
  std::map<std::string, torch::Tensor> directions;
  std::deque<std::string> direction_order;

  [[nodiscard]] EngineModels engine_models() const {
    EngineModels m;
    m.bundle = &*bundle;
    m.generator = &*gen;
    m.clip = &*clip;
    m.identity = identity ? &*identity : nullptr;
    m.device = device;
    m.precision = precision;
    return m;
  }

  /// W+ [1, num_ws, w_dim] → PNG bytes.
  [[nodiscard]] std::string render(const torch::Tensor& ws) const {
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(precision, device);
    return encode_png(gen->synthesis(ws.to(device))[0]);
  }
};

struct Studio::Latent {
  std::string id, name, source;
  std::string root;  ///< the name of the seed or photo it comes from
  torch::Tensor ws;  ///< [1, num_ws, w_dim] on the CPU
  std::string png, target_png;
  json info;
  double created = 0;
  /// When a request last named it (the least recent goes first); read and written under the
  /// Studio's mutex only.
  mutable double used = 0;
  [[nodiscard]] json to_json() const {
    json j = {{"id", id},
              {"name", name},
              {"source", source},
              {"image", "/api/latents/" + id + "/image.png"},
              {"download", "/api/latents/" + id + "/latent.pt"},
              {"info", info}};
    if (!target_png.empty()) j["target"] = "/api/latents/" + id + "/target.png";
    return j;
  }
};

struct Studio::Job {
  std::string id, kind;          // "edit", "photo"
  json request;                  // what was asked, as the job list shows it
  std::string state = "queued";  // queued, running, done, failed, cancelled
  std::string stage;
  int done = 0, total = 0;
  double loss = std::nan("");
  std::string error, error_code;
  json result;
  std::vector<std::string> messages;
  std::map<std::string, fs::path> files;
  double created = 0, started = 0, finished = 0;
  std::atomic<bool> cancel{false};
  // What it works on.
  std::shared_ptr<const Latent> latent;
  std::string method, prompt;
  EngineSettings settings;
  fs::path upload;
  PhotoOptions photo;

  [[nodiscard]] bool ended() const {
    return state == "done" || state == "failed" || state == "cancelled";
  }
  [[nodiscard]] json to_json() const {
    json j = {{"id", id},           {"kind", kind},       {"state", state},
              {"request", request}, {"created", created}, {"url", "/api/jobs/" + id}};
    json progress = {{"stage", stage}, {"done", done}, {"total", total}};
    if (std::isfinite(loss)) progress["loss"] = loss;
    j["progress"] = progress;
    if (started > 0) j["seconds"] = (finished > 0 ? finished : now_seconds()) - started;
    if (!error.empty()) j["error"] = {{"message", error}, {"code", error_code}};
    if (!result.is_null()) j["result"] = result;
    if (!messages.empty()) j["messages"] = messages;
    return j;
  }
};

Studio::Studio(ServeOptions options)
    : options_(std::move(options)),
      models_(std::make_unique<Models>()),
      // The queue's own job limit only backs up the Studio's count of waiting jobs (post), which
      // leaves out cancelled ones still in the queue.
      queue_(options_.max_waiting_previews, 4 * options_.max_waiting_jobs + 16) {
  auto& m = *models_;
  m.device = parse_device(options_.device);
  m.precision = parse_precision(options_.precision, m.device);
  m.bundle.emplace(Bundle::open(options_.models));
  // The bundle's mappers by name, then the ones the operator named (a request names one of
  // these, never a path).
  for (const auto& entry : fs::directory_iterator(options_.models)) {
    const auto file = entry.path().filename().string();
    const std::string suffix = ".mapper.pt";
    if (file.size() > suffix.size() &&
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0) {
      m.mappers[file.substr(0, file.size() - suffix.size())] = entry.path();
    }
  }
  for (const auto& path : options_.mappers) {
    if (!fs::is_regular_file(path)) {
      throw usage_error("invalid --mapper '" + path.string() + "': file does not exist");
    }
    auto name = path.filename().string();
    for (const std::string ext : {".pt", ".mapper"}) {
      if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
        name.resize(name.size() - ext.size());
    }
    m.mappers[name] = path;
  }
  if (options_.max_upload_bytes < 1024) throw usage_error("invalid --max-upload-mb: too small");
  if (options_.max_pixels < 1) throw usage_error("invalid --max-pixels: must be positive");
  // Models on the model thread: it is the one that uses them (and CUDA state is per thread).
  std::packaged_task<void()> load([&m] {
    m.gen.emplace(*m.bundle, m.device);
    m.clip.emplace(*m.bundle, m.device);
    if (m.bundle->has("identity")) m.identity.emplace(*m.bundle, m.device);
    if (m.bundle->has("global_stats")) {
      m.stats.emplace(GlobalStats::load(m.bundle->file("global_stats"), m.gen->info()));
      m.stats->directions = m.stats->directions.to(m.device);
    }
  });
  auto loaded = load.get_future();
  if (options_.max_waiting_jobs < 1 || options_.max_waiting_previews < 1) {
    throw usage_error("invalid --max-jobs: must be 1 or more");
  }
  if (!queue_.post_job([&load] { load(); })) throw usage_error("the model thread is not running");
  loaded.get();
  ensure_output_dir(options_.out);
}

Studio::~Studio() { shutdown(); }

void Studio::shutdown() {
  const std::lock_guard<std::mutex> once(shutdown_mutex_);  // two stoppers: the second waits
  stopping_ = true;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, job] : jobs_) job->cancel = true;
  }
  queue_.stop();  // the running job sees `stopping_` at its next step
  const std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [id, job] : jobs_) {
    if (job->state == "queued") {
      job->state = "cancelled";
      job->error = "the server stopped";
      job->error_code = "cancelled";
    }
  }
}

std::string Studio::new_id() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(buf, 12);
}

size_t Studio::waiting_jobs() const {
  // Jobs that wait count, cancelled ones do not (they leave the queue when their turn comes).
  size_t waiting = 0;
  for (const auto& [id, j] : jobs_) waiting += j->state == "queued" ? 1 : 0;
  return waiting;
}

json Studio::info() const {
  const auto& m = *models_;
  size_t waiting = 0;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    waiting = waiting_jobs();
  }
  const auto& g = m.gen->info();
  json engines_json = json::array();
  for (const auto& e : engines()) {
    json opts = json::array();
    for (const auto& o : e.options) {
      if (o.kind == EngineOption::Kind::kImage || not_offered().count(o.name)) continue;
      static const char* kinds[] = {"integer", "number", "text", "flag", "image"};
      json oj = {{"name", o.name.substr(2)},
                 {"kind", kinds[static_cast<int>(o.kind)]},
                 {"help", o.help},
                 {"default", o.default_value}};
      if (!o.choices.empty()) oj["choices"] = o.choices;
      opts.push_back(oj);
    }
    const bool usable = e.name != "global" || m.stats.has_value();
    engines_json.push_back(
        {{"name", e.name}, {"summary", e.summary}, {"options", opts}, {"usable", usable}});
  }
  json mappers = json::array();
  for (const auto& [name, path] : m.mappers) mappers.push_back(name);
  return {{"tool", "styleclip"},
          {"version", STYLECLIP_VERSION},
          {"models",
           {{"name", fs::absolute(options_.models).lexically_normal().filename().string()},
            {"generator", to_string(g.family)},
            {"resolution", g.resolution},
            {"num_ws", g.num_ws},
            {"w_dim", g.w_dim},
            {"conditional", g.c_dim > 0},
            {"identity", m.identity.has_value()}}},
          {"device", m.device.str()},
          {"precision", to_string(m.precision)},
          {"engines", engines_json},
          {"mappers", mappers},
          {"global",
           {{"available", m.stats.has_value()},
            {"channels", m.stats ? m.stats->directions.size(0) : 0}}},
          {"photos",
           {{"face_detector", !options_.face_detector.empty() || m.bundle->has("face_detector")},
            {"encoder", m.bundle->has("encoder")},
            {"max_upload_bytes", options_.max_upload_bytes},
            {"max_pixels", options_.max_pixels},
            {"max_steps", options_.max_invert_steps}}},
          {"queue", {{"waiting_previews", queue_.waiting_quick()}, {"waiting_jobs", waiting}}}};
}

// ---------------------------------------------------------------------------------------------
// Latents

/// Runs `f` on the model thread as a quick task and returns its answer (or throws its error).
template <class F>
auto on_model_thread(DeviceQueue& queue, const std::atomic<bool>& stopping, F f) -> decltype(f()) {
  using R = decltype(f());
  if (stopping) throw StudioError(503, "stopping", "the server is stopping");
  auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
  auto answer = task->get_future();
  if (!queue.post_quick([task] { (*task)(); })) {
    throw StudioError(503, "busy", "too many previews are waiting: try again in a moment");
  }
  try {
    return answer.get();
  } catch (const std::future_error&) {  // dropped unrun: the queue stopped
    throw StudioError(503, "stopping", "the server is stopping");
  }
}

std::shared_ptr<const Studio::Latent> Studio::keep_latent(Latent latent) {
  latent.id = new_id();
  latent.created = now_seconds();
  latent.used = latent.created;
  auto kept = std::make_shared<const Latent>(std::move(latent));
  const std::lock_guard<std::mutex> lock(mutex_);
  latents_[kept->id] = kept;
  while (latents_.size() > kKeepLatents) {
    auto oldest = std::min_element(latents_.begin(), latents_.end(), [](auto& a, auto& b) {
      return a.second->used < b.second->used;
    });
    latents_.erase(oldest);
  }
  return kept;
}

std::shared_ptr<const Studio::Latent> Studio::find_latent(const std::string& id) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto it = latents_.find(id);
  if (it == latents_.end()) {
    throw StudioError(404, "not_found",
                      "no latent '" + id + "' (the server keeps the " +
                          std::to_string(kKeepLatents) + " used last; add it again)");
  }
  it->second->used = now_seconds();
  return it->second;
}

json Studio::add_seed(const json& request) {
  only_fields(request, {"seed", "truncation", "class"});
  if (!request.contains("seed") || !request.at("seed").is_number_integer() ||
      request.at("seed").get<int64_t>() < 0) {
    throw usage_error("invalid 'seed': expected a whole number 0 or more, e.g. {\"seed\": 7}");
  }
  const auto seed = request.at("seed").get<uint64_t>();
  const double truncation = number_field(request, "truncation", 0.7);
  if (truncation < 0 || truncation > 2)
    throw usage_error("invalid 'truncation': must be in [0, 2]");
  std::optional<int64_t> class_index;
  if (request.contains("class")) {
    if (!request.at("class").is_number_integer())
      throw usage_error("invalid 'class': expected a whole number");
    class_index = request.at("class").get<int64_t>();
  }
  const auto& g = models_->bundle->generator();
  check_seeds({seed}, g, options_.models);
  class_index = check_class(class_index, g, options_.models, true, "seed");
  Latent latent = on_model_thread(queue_, stopping_, [&] {
    Latent l;
    auto items = collect_inputs(*models_->gen, {seed}, truncation, class_index, {});
    l.name = items.at(0).name;
    l.ws = items.at(0).ws.to(torch::kCPU);
    l.png = models_->render(l.ws);
    return l;
  });
  latent.source = "seed";
  latent.root = latent.name;
  latent.info = {{"seed", seed}, {"truncation", truncation}};
  if (class_index) latent.info["class"] = *class_index;
  return keep_latent(std::move(latent))->to_json();
}

json Studio::latents() const {
  std::vector<std::shared_ptr<const Latent>> all;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, l] : latents_) all.push_back(l);
  }
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a->created < b->created; });
  json out = json::array();
  for (const auto& l : all) out.push_back(l->to_json());
  return out;
}

json Studio::latent(const std::string& id) const { return find_latent(id)->to_json(); }

Download Studio::latent_file(const std::string& id, const std::string& file) const {
  const auto l = find_latent(id);
  if (file == "image.png") return {l->png, "image/png", l->name + ".png"};
  if (file == "target.png" && !l->target_png.empty())
    return {l->target_png, "image/png", l->name + ".target.png"};
  if (file == "latent.pt") {
    const auto bytes = tensor_to_pt_bytes(l->ws);
    return {std::string(bytes.begin(), bytes.end()), "application/octet-stream",
            l->name + ".latent.pt"};
  }
  throw StudioError(404, "not_found",
                    "latent '" + id + "' has no file '" + file +
                        "' (image.png, latent.pt, and target.png for a photo)");
}

// ---------------------------------------------------------------------------------------------
// Previews

json Studio::preview(const json& request) {
  only_fields(request,
              {"latent", "neutral", "target", "strength", "threshold", "templates", "client"});
  if (!models_->stats) {
    throw bundle_error("model bundle '" + options_.models.string() +
                       "' has no global-direction statistics: run styleclip global prepare "
                       "--models " +
                       options_.models.string());
  }
  const auto latent = find_latent(text_field(request, "latent", ""));
  if (blank(text_field(request, "neutral", ""))) {
    throw usage_error("'neutral' is empty: say what the image shows now, e.g. \"face\"");
  }
  if (blank(text_field(request, "target", ""))) {
    throw usage_error("'target' is empty: give the edit in words, e.g. \"face with blonde hair\"");
  }
  (void)number_field(request, "strength", 4.1);
  if (request.contains("threshold") && !(request.at("threshold") == "auto")) {
    const double beta = number_field(request, "threshold", 0.15);
    if (beta < 0 || beta > 1) {
      throw usage_error(
          "invalid 'threshold': must be in [0, 1] or \"auto\" (relevances are cosines)");
    }
  }
  (void)flag_field(request, "templates", true);
  const auto client = text_field(request, "client", "");
  if (stopping_) throw StudioError(503, "stopping", "the server is stopping");
  const auto queued = std::chrono::steady_clock::now();
  std::future<json> answer;
  {
    // The newest preview a client has *queued* replaces its older ones: the number is taken
    // and the task queued under one lock, so a refused preview (busy) replaces nothing and the
    // task's check below cannot run before the number is recorded.
    const std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t serial = ++serial_;
    auto task = std::make_shared<std::packaged_task<json()>>(
        [this, &request, latent, client, serial, queued] {
          if (!client.empty()) {
            const std::lock_guard<std::mutex> check(mutex_);
            const auto it = preview_serial_.find(client);
            if (it != preview_serial_.end() && it->second != serial) {
              throw StudioError(409, "superseded",
                                "a newer preview from this client replaced this one");
            }
          }
          auto result = render_preview(request, *latent);
          result["queued_ms"] =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - queued)
                  .count();
          return result;
        });
    answer = task->get_future();
    if (!queue_.post_quick([task] { (*task)(); })) {
      throw StudioError(503, "busy", "too many previews are waiting: try again in a moment");
    }
    if (!client.empty()) {
      if (preview_serial_.size() > 4096) preview_serial_.clear();  // bounded; harmless to forget
      preview_serial_[client] = serial;
    }
  }
  try {
    return answer.get();
  } catch (const std::future_error&) {  // dropped unrun: the queue stopped
    throw StudioError(503, "stopping", "the server is stopping");
  }
}

json Studio::render_preview(const json& request, const Latent& latent) {
  const auto t0 = std::chrono::steady_clock::now();
  auto& m = *models_;
  torch::NoGradGuard no_grad;
  const PrecisionScope scope(m.precision, m.device);
  const auto neutral = request.at("neutral").get<std::string>();
  const auto target = request.at("target").get<std::string>();
  const bool templates = flag_field(request, "templates", true);
  const auto key = neutral + "\n" + target + "\n" + (templates ? "1" : "0");
  auto found = m.directions.find(key);
  if (found == m.directions.end()) {
    if (m.direction_order.size() >= kKeepDirections) {
      m.directions.erase(m.direction_order.front());
      m.direction_order.pop_front();
    }
    found = m.directions.emplace(key, text_direction(*m.clip, target, neutral, templates)).first;
    m.direction_order.push_back(key);
  }
  const auto& dt = found->second;
  const auto& g = m.gen->info();
  const bool automatic = request.contains("threshold") && request.at("threshold") == "auto";
  const double beta =
      automatic ? auto_threshold(*m.stats, g, dt) : number_field(request, "threshold", 0.15);
  const double alpha = number_field(request, "strength", 4.1);
  const auto edit = global_delta(*m.stats, g, dt, beta);
  const auto styles = m.gen->styles(latent.ws.to(m.device));
  const auto image = m.gen->synthesis_from_styles(
      edit.channels > 0 ? apply_delta(styles, edit, alpha) : styles)[0];
  return {
      {"image", "data:image/png;base64," + base64(encode_png(image))},
      {"channels", edit.channels},
      {"channels_total", m.stats->directions.size(0)},
      {"threshold", beta},
      {"strength", alpha},
      {"max_relevance", edit.max_relevance},
      {"milliseconds",
       std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()}};
}

// ---------------------------------------------------------------------------------------------
// Jobs

std::shared_ptr<Studio::Job> Studio::find_job(const std::string& id) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    throw StudioError(404, "not_found",
                      "no job '" + id + "' (the server keeps the newest " +
                          std::to_string(kKeepJobs) + " finished jobs)");
  }
  return it->second;
}

bool Studio::job_should_stop(Job& job) {
  queue_.run_quick();  // previews waiting now go before the job's next step
  return job.cancel || stopping_;
}

json Studio::post(const std::shared_ptr<Job>& job) {
  job->id = new_id();
  job->created = now_seconds();
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw StudioError(503, "stopping", "the server is stopping");
    if (waiting_jobs() >= options_.max_waiting_jobs) {
      throw StudioError(503, "busy",
                        "too many jobs are waiting (" + std::to_string(options_.max_waiting_jobs) +
                            "): try again when one has finished (serve --max-jobs)");
    }
    jobs_[job->id] = job;
    // Forget the oldest finished jobs beyond the limit (their files stay on disk).
    size_t ended = 0;
    for (const auto& [id, j] : jobs_) ended += j->ended() ? 1 : 0;
    while (ended > kKeepJobs) {
      auto oldest = jobs_.end();
      for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
        if (it->second->ended() &&
            (oldest == jobs_.end() || it->second->created < oldest->second->created))
          oldest = it;
      }
      jobs_.erase(oldest);
      --ended;
    }
  }
  if (!queue_.post_job([this, job] { run_job(job); })) {
    const std::lock_guard<std::mutex> lock(mutex_);
    jobs_.erase(job->id);
    throw StudioError(503, stopping_ ? "stopping" : "busy",
                      stopping_ ? std::string("the server is stopping")
                                : "too many cancelled jobs are still in the queue: try again when "
                                  "the running job has finished");
  }
  const std::lock_guard<std::mutex> lock(mutex_);
  return job->to_json();
}

void Studio::run_job(const std::shared_ptr<Job>& job) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (job->cancel || stopping_) {
      if (job->state == "queued") {
        job->state = "cancelled";
        job->error = stopping_ ? "the server stopped" : "cancelled before it started";
        job->error_code = "cancelled";
        job->finished = now_seconds();
      }
      return;
    }
    job->state = "running";
    job->started = now_seconds();
  }
  std::string state = "done", error, code;
  json result;
  try {
    result = job->kind == "photo" ? run_photo_job(*job) : run_edit_job(*job);
  } catch (const Error& e) {
    const bool cancelled = e.code() == ExitCode::kInterrupted;
    state = cancelled ? "cancelled" : "failed";
    error = e.what();
    code = cancelled ? "cancelled" : error_code_name(e.code());
  } catch (const StudioError& e) {
    state = e.code() == "cancelled" ? "cancelled" : "failed";
    error = e.what();
    code = e.code();
  } catch (const std::exception& e) {
    const auto m = torch_message(e);
    state = "failed";
    error = is_out_of_memory(m) ? "out of memory: " + m : "internal error: " + m;
    code = is_out_of_memory(m) ? "device" : "internal";
  }
  if (state != "done") spdlog::warn("job {} {}: {}", job->id, state, error);
  const std::lock_guard<std::mutex> lock(mutex_);
  job->state = state;
  job->error = error;
  job->error_code = code;
  job->result = result;
  job->finished = now_seconds();
  job->latent.reset();  // an ended job need not keep its input in memory
  job->settings = EngineSettings();
#ifdef __GLIBC__
  // A job frees what it allocated, but glibc keeps the freed small blocks of its heap: after 400
  // global jobs one after another on the demonstration bundle the server held 423 MB, and 289 MB
  // once malloc_trim had run. A server that runs for weeks gives it back after each job
  // (milliseconds, on the model thread, between jobs).
  malloc_trim(0);
#endif
}

json Studio::add_job(const json& request) {
  only_fields(request, {"latent", "method", "text", "options"});
  auto job = std::make_shared<Job>();
  job->kind = "edit";
  job->method = text_field(request, "method", "optimize");
  const auto& engine = find_engine(job->method);
  job->latent = find_latent(text_field(request, "latent", ""));
  job->prompt = text_field(request, "text", "");
  const json options = request.value("options", json::object());
  if (!options.is_object())
    throw usage_error("invalid 'options': expected an object of name: value");
  for (const auto& [key, value] : options.items()) {
    const auto name = "--" + key;
    const auto own = std::find_if(engine.options.begin(), engine.options.end(),
                                  [&](const EngineOption& o) { return o.name == name; });
    if (own == engine.options.end()) {
      throw usage_error("unknown option '" + key + "' for method " + job->method +
                        " (GET /api/info lists each method's options)");
    }
    if (own->kind == EngineOption::Kind::kImage || not_offered().count(name)) {
      throw usage_error("option '" + key + "' is not offered by the server (it writes or reads " +
                        "files beside the output): use styleclip edit");
    }
    auto text = option_text(key, value);
    if (name == "--mapper") {  // a name the server offers, never a path
      const auto it = models_->mappers.find(text);
      if (it == models_->mappers.end()) {
        std::string names;
        for (const auto& [n, p] : models_->mappers) names += (names.empty() ? "" : ", ") + n;
        throw usage_error("unknown mapper '" + text +
                          "' (this server offers: " + (names.empty() ? "none" : names) + ")");
      }
      text = it->second.string();
    }
    job->settings.set(name, text);
  }
  if (!engine.takes_inputs(job->settings)) {
    throw usage_error(
        "this method and mode start from the average latent: the server edits a "
        "latent (leave out mode free)");
  }
  if (blank(job->prompt) && engine.needs_prompt(job->settings)) {
    throw usage_error("'text' is empty: give the edit in words, e.g. \"a smiling face\"");
  }
  if (engine.check) engine.check(job->settings, *models_->bundle, models_->device);
  job->request = {{"latent", job->latent->id},
                  {"method", job->method},
                  {"text", job->prompt},
                  {"options", options}};
  return post(job);
}

json Studio::run_edit_job(Job& job) {
  auto& m = *models_;
  const auto& engine_info = find_engine(job.method);
  auto engine = engine_info.create(m.engine_models(), job.settings);
  EngineHooks hooks;
  hooks.progress = [&](int done, int total, double loss) {
    const std::lock_guard<std::mutex> lock(mutex_);
    job.stage = "edit";
    job.done = done;
    job.total = total;
    job.loss = loss;
  };
  hooks.should_stop = [&] { return job_should_stop(job); };
  hooks.log = [&](LogLevel level, const std::string& message) {
    if (level == LogLevel::kDebug) return;
    spdlog::info("job {}: {}", job.id, message);
    const std::lock_guard<std::mutex> lock(mutex_);
    if (job.messages.size() < 32) job.messages.push_back(message);
  };
  const auto prompt = blank(job.prompt) ? engine->default_prompt() : job.prompt;
  const auto options = engine->prepare(prompt, hooks);
  if (job_should_stop(job)) throw Error(ExitCode::kInterrupted, "cancelled");
  const auto r = engine->edit(job.latent->ws.to(m.device), hooks);
  if (r.stopped || job.cancel || stopping_) throw Error(ExitCode::kInterrupted, "cancelled");
  // The outputs, as `styleclip edit` names and writes them (the sidecar last).
  const auto dir = options_.out / "results" / job.id;
  ensure_output_dir(dir);
  const auto base = (dir / (job.latent->name + "." + slug(prompt) + "." + job.method)).string();
  json outputs;
  std::map<std::string, fs::path> files;
  write_image(base + ".png", r.after[0]);
  files["image"] = base + ".png";
  write_image(base + ".before.png", r.before[0]);
  files["before"] = base + ".before.png";
  write_image_row(base + ".compare.png", {r.before[0], r.after[0]});
  files["compare"] = base + ".compare.png";
  std::shared_ptr<const Latent> edited;
  if (r.ws.defined()) {
    save_tensor_pt(base + ".latent.pt", r.ws.slice(0, 0, 1));
    files["latent"] = base + ".latent.pt";
    Latent l;
    // Named after the seed or photo it came from and this edit only (a chain of edits would
    // otherwise grow past the file system's name limit); `info.from` links the chain.
    l.name = job.latent->root + "." + slug(prompt);
    l.root = job.latent->root;
    l.source = "edit";
    l.ws = r.ws.slice(0, 0, 1).to(torch::kCPU, torch::kFloat32);
    l.png = m.render(l.ws);
    l.info = {{"job", job.id}, {"from", job.latent->id}, {"method", job.method}, {"text", prompt}};
    edited = keep_latent(std::move(l));
  }
  if (!r.styles.empty()) {
    std::vector<torch::Tensor> s;
    for (const auto& layer : r.styles) s.push_back(layer.slice(0, 0, 1));
    save_tensors_pt(base + ".styles.pt", s);
    files["styles"] = base + ".styles.pt";
  }
  for (const auto& [key, path] : files) outputs[key] = path.filename().string();
  json side = sidecar_header("serve", options_.models, m.bundle->checksums());
  side["engine"] = job.method;
  side["prompt"] = prompt;
  side["input"] = {
      {"name", job.latent->name}, {"source", job.latent->source}, {"info", job.latent->info}};
  side["options"] = options;
  side["status"] = r.errors.at(0).empty() ? "ok" : "failed";
  if (!r.errors.at(0).empty()) side["error"] = r.errors.at(0);
  side["metrics"] = r.metrics.at(0);
  side["timing"] = r.timing;
  side["outputs"] = outputs;
  write_json(base + ".json", side);
  files["sidecar"] = base + ".json";
  json result = {{"metrics", side["metrics"]},
                 {"options", options},
                 {"prompt", prompt},
                 {"status", side["status"]}};
  if (side.contains("error")) result["warning"] = side["error"];
  json links;
  for (const auto& [key, path] : files) links[key] = "/api/jobs/" + job.id + "/files/" + key;
  result["files"] = links;
  if (edited) result["latent"] = edited->to_json();
  const std::lock_guard<std::mutex> lock(mutex_);
  job.files = files;
  return result;
}

json Studio::add_photo(const std::string& bytes, const json& params) {
  only_fields(params, {"aligned", "with", "steps"});
  if (static_cast<int64_t>(bytes.size()) > options_.max_upload_bytes) {
    throw StudioError(413, "too_large",
                      "the upload is larger than " + std::to_string(options_.max_upload_bytes) +
                          " bytes (serve --max-upload-mb)");
  }
  if (bytes.empty()) throw usage_error("the upload is empty: send the picture's bytes as the body");
  const auto ext = picture_extension(bytes);
  auto job = std::make_shared<Job>();
  job->kind = "photo";
  auto& po = job->photo;
  po.detector = options_.face_detector;
  po.aligned = flag_field(params, "aligned", false);
  po.with = text_field(params, "with", "auto");
  if (po.with != "auto" && po.with != "encoder" && po.with != "optimize") {
    throw usage_error("invalid 'with' '" + po.with +
                      "': expected auto, encoder or optimize (pivotal tuning: styleclip invert "
                      "--with pti)");
  }
  po.max_pixels = options_.max_pixels;
  po.engine.precision = models_->precision;
  const double steps = number_field(params, "steps", po.engine.steps);
  if (steps < 1 || steps > options_.max_invert_steps || steps != std::floor(steps)) {
    throw usage_error("invalid 'steps': must be a whole number from 1 to " +
                      std::to_string(options_.max_invert_steps));
  }
  po.engine.steps = static_cast<int>(steps);
  if (!po.aligned && po.detector.empty() && !models_->bundle->has("face_detector")) {
    throw input_error(
        "this server has no face detector (serve --face-detector FILE, or a bundle with "
        "face_detector.onnx): upload an aligned face crop with aligned=true");
  }
  // The picture goes to the server's own folder under a name it makes; its size is checked from
  // the header before anything decodes it.
  const auto uploads = options_.out / "uploads";
  ensure_output_dir(uploads);
  const auto id = new_id();
  job->upload = uploads / (id + ext);
  write_file_atomic(job->upload, bytes);
  if (const auto size = peek_image_size(job->upload)) {
    if (size->first * size->second > options_.max_pixels) {
      fs::remove(job->upload);
      throw StudioError(413, "too_large",
                        "the picture has " + std::to_string(size->first) + "x" +
                            std::to_string(size->second) + " pixels, more than " +
                            std::to_string(options_.max_pixels) + " (serve --max-pixels)");
    }
  }
  job->request = {{"aligned", po.aligned},
                  {"with", po.with},
                  {"steps", po.engine.steps},
                  {"bytes", bytes.size()}};
  return post(job);
}

json Studio::run_photo_job(Job& job) {
  auto& m = *models_;
  RemoveUnlessKept upload(job.upload);  // the crop and the latent are what is kept
  PhotoInverter inverter(*m.bundle, options_.models, *m.gen, &*m.clip,
                         m.identity ? &*m.identity : nullptr, job.photo, options_.out / "photos");
  inverter.set_step_hook([&](const std::string& stage, int done, int total, double loss) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      job.stage = stage;
      job.done = done;
      job.total = total;
      job.loss = loss;
    }
    if (job_should_stop(job)) throw Error(ExitCode::kInterrupted, "cancelled");
  });
  auto face = inverter.locate(job.upload, "upload-" + job.upload.stem().string());
  inverter.invert(face);
  Latent l;
  l.name = face.name;
  l.source = "photo";
  l.root = l.name;
  l.ws = face.ws.to(torch::kCPU, torch::kFloat32);
  l.png = m.render(l.ws);
  l.target_png = encode_png(to_generator_range(face.crop));
  l.info = face.to_json();
  const auto kept = keep_latent(std::move(l));
  return {{"latent", kept->to_json()},
          {"psnr", face.psnr},
          {"method", face.method},
          {"faces_found", face.faces_found}};
}

json Studio::jobs() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<Job>> all;
  for (const auto& [id, j] : jobs_) all.push_back(j);
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a->created < b->created; });
  json out = json::array();
  for (const auto& j : all) out.push_back(j->to_json());
  return out;
}

json Studio::job(const std::string& id) const {
  const auto j = find_job(id);
  const std::lock_guard<std::mutex> lock(mutex_);
  return j->to_json();
}

json Studio::cancel(const std::string& id) {
  const auto j = find_job(id);
  const std::lock_guard<std::mutex> lock(mutex_);
  if (j->ended()) {
    throw StudioError(409, "ended", "job '" + id + "' has already ended (" + j->state + ")");
  }
  j->cancel = true;  // a running job stops at its next step; a waiting one is skipped
  if (j->state == "queued") {
    j->state = "cancelled";
    j->error = "cancelled before it started";
    j->error_code = "cancelled";
    j->finished = now_seconds();
  }
  return j->to_json();
}

Download Studio::job_file(const std::string& id, const std::string& file) const {
  const auto j = find_job(id);
  fs::path path;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = j->files.find(file);
    if (it == j->files.end()) {
      std::string keys;
      for (const auto& [k, p] : j->files) keys += (keys.empty() ? "" : ", ") + k;
      throw StudioError(
          404, "not_found",
          "job '" + id + "' has no file '" + file + "'" +
              (keys.empty() ? std::string(" (it has not finished)") : " (it has: " + keys + ")"));
    }
    path = it->second;
  }
  const auto name = path.filename().string();
  const auto ext = path.extension().string();
  const std::string type = ext == ".png"    ? "image/png"
                           : ext == ".json" ? "application/json"
                                            : "application/octet-stream";
  return {read_bytes(path), type, name};
}

}  // namespace styleclip
