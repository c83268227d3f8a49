#include <styleclip/workflows/batch.h>

#include <styleclip/error.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fnmatch.h>

#include <spdlog/spdlog.h>

namespace styleclip {
namespace fs = std::filesystem;

namespace {

bool matches(const fs::path& file, const std::vector<std::string>& globs) {
  const auto name = file.filename().string();
  return std::any_of(globs.begin(), globs.end(), [&](const std::string& g) {
    return fnmatch(g.c_str(), name.c_str(), 0) == 0;
  });
}

std::string without_extension(const fs::path& rel) {
  return (rel.parent_path() / rel.stem()).generic_string();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths, bool recursive,
                                     const std::vector<std::string>& globs) {
  std::vector<InputFile> out;
  for (const auto& p : paths) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (!fs::exists(st)) {
      // A missing file is left for the reader, which names it ("file does not exist") as one
      // failed input; only folders are expanded here.
      out.push_back({p, fs::path(p).stem().string()});
      continue;
    }
    if (!fs::is_directory(st)) {
      out.push_back({p, fs::path(p).stem().string()});
      continue;
    }
    std::vector<InputFile> found;
    const auto add = [&](const fs::directory_entry& e) {
      if (e.is_regular_file(ec) && matches(e.path(), globs)) {
        found.push_back({e.path(), without_extension(e.path().lexically_relative(p))});
      }
    };
    try {
      if (recursive) {
        for (const auto& e : fs::recursive_directory_iterator(p)) add(e);
      } else {
        for (const auto& e : fs::directory_iterator(p)) add(e);
      }
    } catch (const fs::filesystem_error& e) {
      throw input_error("cannot list folder '" + p + "': " + e.code().message());
    }
    if (found.empty()) {
      throw usage_error("folder '" + p + "' has no input matching " + join(globs) +
                        (recursive ? ""
                                   : " (use --recursive for sub-folders, --glob for others, e.g. "
                                     "--glob '*.jpg' for photos)"));
    }
    std::sort(found.begin(), found.end(),
              [](const InputFile& a, const InputFile& b) { return a.path < b.path; });
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

Shard parse_shard(const std::string& spec) {
  Shard s;
  if (spec.empty()) return s;
  const auto number = [](const std::string& text, std::size_t& value) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 9)
      return false;
    value = std::stoul(text);
    return true;
  };
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? "" : v;
  };
  if (spec == "auto") {
    std::size_t id = 0;
    std::size_t count = 0;
    std::size_t min = 0;
    if (!env("SLURM_ARRAY_TASK_ID").empty()) {
      if (!number(env("SLURM_ARRAY_TASK_ID"), id) ||
          !number(env("SLURM_ARRAY_TASK_COUNT"), count)) {
        throw usage_error(
            "--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must be numbers (got '" +
            env("SLURM_ARRAY_TASK_ID") + "', '" + env("SLURM_ARRAY_TASK_COUNT") + "')");
      }
      if (!env("SLURM_ARRAY_TASK_MIN").empty() && !number(env("SLURM_ARRAY_TASK_MIN"), min)) {
        throw usage_error("--shard auto: SLURM_ARRAY_TASK_MIN must be a number");
      }
      if (id < min)
        throw usage_error("--shard auto: SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN");
      s = {id - min + 1, count, "SLURM_ARRAY_TASK_ID"};
    } else if (!env("JOB_COMPLETION_INDEX").empty()) {
      if (!number(env("JOB_COMPLETION_INDEX"), id) || !number(env("STYLECLIP_SHARDS"), count)) {
        throw usage_error(
            "--shard auto: a Kubernetes indexed Job needs JOB_COMPLETION_INDEX and "
            "STYLECLIP_SHARDS (set it to the Job's completions) as numbers (got '" +
            env("JOB_COMPLETION_INDEX") + "', '" + env("STYLECLIP_SHARDS") + "')");
      }
      s = {id + 1, count, "JOB_COMPLETION_INDEX"};
    } else {
      throw usage_error(
          "--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set (give "
          "--shard K/N)");
    }
  } else {
    const auto slash = spec.find('/');
    if (slash == std::string::npos || !number(spec.substr(0, slash), s.index) ||
        !number(spec.substr(slash + 1), s.count)) {
      throw usage_error("invalid --shard '" + spec + "': expected K/N (e.g. 2/8) or auto");
    }
    s.source = "--shard " + spec;
  }
  if (s.count == 0 || s.index == 0 || s.index > s.count) {
    throw usage_error("invalid shard " + std::to_string(s.index) + "/" + std::to_string(s.count) +
                      " (from " + (s.source.empty() ? "--shard" : s.source) +
                      "): need 1 <= K <= N");
  }
  return s;
}

std::pair<std::size_t, std::size_t> shard_range(std::size_t n, const Shard& s) {
  const auto at = [&](std::size_t k) { return n * k / s.count; };
  return {at(s.index - 1), at(s.index)};
}

std::vector<std::string> read_prompts(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw input_error("cannot read prompts '" + path.string() + "': file does not exist");
  if (fs::is_directory(path, ec))
    throw input_error("cannot read prompts '" + path.string() +
                      "': is a folder, expected a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error("cannot read prompts '" + path.string() + "': cannot open it");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto text = ss.str();
  if (text.size() > (1u << 20))
    throw input_error("cannot read prompts '" + path.string() + "': larger than 1 MiB");
  if (text.find('\0') != std::string::npos)
    throw input_error("cannot read prompts '" + path.string() + "': binary data, expected text");
  std::vector<std::string> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t");
    out.push_back(line.substr(first, last - first + 1));
  }
  if (out.empty())
    throw input_error("cannot read prompts '" + path.string() +
                      "': no prompt in it (one per line; '#' starts a comment)");
  return out;
}

// ---- interruption ------------------------------------------------------------------------

namespace {
std::atomic<bool> g_interrupted{false};
// The first signal asks the work to stop at its next safe point; a second one, for a user who
// will not wait for that, ends the process as the signal normally would (signal() and raise()
// are async-signal-safe).
extern "C" void on_interrupt(int sig) {
  if (g_interrupted.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

// Each guard starts and ends clean: a library caller may run again after an interrupted run.
InterruptGuard::InterruptGuard()
    : old_int_((g_interrupted = false, std::signal(SIGINT, on_interrupt))),
      old_term_(std::signal(SIGTERM, on_interrupt)) {}

InterruptGuard::~InterruptGuard() {
  std::signal(SIGINT, old_int_);
  std::signal(SIGTERM, old_term_);
  g_interrupted = false;  // work outside a guard (e.g. a later inversion) is not stopped
}

bool InterruptGuard::interrupted() { return g_interrupted.load(); }

// ---- summary -----------------------------------------------------------------------------

RunSummary::RunSummary(std::string command)
    : command_(std::move(command)), start_(std::chrono::steady_clock::now()) {}

void RunSummary::done(const nlohmann::json& row) {
  ++done_;
  outputs_.push_back(row);
}

void RunSummary::failed(const std::string& name, const std::string& reason) {
  failures_.push_back({{"name", name}, {"error", reason}});
}

nlohmann::json RunSummary::finish(bool interrupted) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? double(done_) / secs : 0.0;
  spdlog::info(
      "{}: {} done, {} skipped (outputs exist), {} failed in {:.1f} s ({:.2f} per second){}",
      command_, done_, skipped_, failures_.size(), secs, rate,
      interrupted ? "; interrupted: rerun the same command to finish the rest" : "");
  for (const auto& f : failures_) {
    spdlog::error("  failed: {}: {}", f["name"].get<std::string>(), f["error"].get<std::string>());
  }
  if (skipped_ > 0 && done_ == 0 && failures_.empty() && !interrupted) {
    spdlog::info("every output already exists: pass --overwrite to compute them again");
  }
  return {{"outputs", outputs_},        {"done", done_},         {"skipped", skipped_},
          {"failed", failures_.size()}, {"failures", failures_}, {"interrupted", interrupted},
          {"wall_seconds", secs},       {"per_second", rate}};
}

}  // namespace styleclip

// ---- one batch run -----------------------------------------------------------------------

namespace styleclip {

std::vector<std::string> photo_globs() {
  std::vector<std::string> out;
  for (const char* ext : {"jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"}) {
    std::string upper = ext;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.push_back(std::string("*.") + ext);
    out.push_back("*." + upper);
  }
  return out;
}

void RunSummary::skipped(const std::string& name, const nlohmann::json& row) {
  ++skipped_;
  if (!row.is_null()) outputs_.push_back(row);
  spdlog::debug("{}: outputs exist, skipped (--overwrite to redo)", name);
}

std::string RunSummary::first_failure() const {
  return failures_.empty() ? std::string() : failures_.front()["error"].get<std::string>();
}

BatchRun::BatchRun(std::string command, const std::string& shard, bool overwrite)
    : command_(std::move(command)),
      shard_(parse_shard(shard)),
      overwrite_(overwrite),
      summary_(command_) {}

std::pair<std::size_t, std::size_t> BatchRun::take(std::size_t n) const {
  const auto range = shard_range(n, shard_);
  if (shard_.count > 1) {
    spdlog::info("shard {}/{} ({}): inputs {}..{} of {}", shard_.index, shard_.count, shard_.source,
                 range.first + 1, range.second, n);
  }
  return range;
}

void BatchRun::start() {
  guard_.emplace();
  summary_.restart_clock();
}

bool BatchRun::finished(const std::string& name, const fs::path& sidecar,
                        const nlohmann::json& row) {
  std::error_code ec;
  if (overwrite_ || !fs::exists(sidecar, ec)) return false;
  summary_.skipped(name, row);
  return true;
}

bool BatchRun::stop_requested() {
  if (guard_ && InterruptGuard::interrupted()) interrupted_ = true;
  return interrupted_;
}

BatchReport BatchRun::finish(std::size_t inputs, const std::string& what_verb) {
  stop_requested();
  BatchReport report{summary_.finish(interrupted_), 0};
  guard_.reset();
  const auto failed = summary_.failures();
  if (!what_verb.empty() && inputs > 1 && failed == inputs) {
    throw input_error("none of the " + std::to_string(inputs) + " " + what_verb +
                      "; the first: " + summary_.first_failure());
  }
  if (failed > 0) report.exit_code = static_cast<int>(ExitCode::kSomeInputsFailed);
  if (interrupted_) report.exit_code = static_cast<int>(ExitCode::kInterrupted);
  return report;
}

}  // namespace styleclip
