// Global-direction preparation with checkpoints (global_prepare.h); the statistics and the
// per-channel directions are engines/global_directions.h.
#include <styleclip/workflows/global_prepare.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/runtime.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<int64_t> parse_layers(const std::string& spec, const GeneratorInfo& info) {
  std::vector<int64_t> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t l = -1;
    try {
      size_t used = 0;
      l = std::stoll(item, &used);
      if (used != item.size()) l = -1;
    } catch (const std::exception&) {
      l = -1;
    }
    if (l < 0 || l >= static_cast<int64_t>(info.style_dims.size())) {
      throw usage_error("invalid --layers '" + spec + "': unknown layer '" + item +
                        "' (this generator has style layers 0-" +
                        std::to_string(info.style_dims.size() - 1) + ")");
    }
    if (info.style_is_rgb[static_cast<size_t>(l)]) {
      throw usage_error("invalid --layers '" + spec + "': layer " + item +
                        " is a toRGB layer (global directions use the others)");
    }
    if (info.style_is_input[static_cast<size_t>(l)]) {
      throw usage_error("invalid --layers '" + spec + "': layer " + item +
                        " is StyleGAN3's input transform, not a style layer (use 1-" +
                        std::to_string(info.style_dims.size() - 2) + ")");
    }
    out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty()) throw usage_error("invalid --layers '" + spec + "': no layer given");
  return out;
}

/// The preparation's options, checked against the bundle before any model loads.
PrepareOptions prepare_options(const GlobalPrepareRun& run, const GeneratorInfo& info,
                               const torch::Device& device) {
  PrepareOptions p;
  p.class_index = check_class(run.class_index, info, run.models, true, "--samples");
  p.samples = run.samples;
  p.images = run.images;
  p.seed = run.seed;
  // On the CPU, per-sample grouped convolutions stop paying beyond ~16 renders of 64 px
  // (bench/RESULTS.md: 64 px best at 16, 256 px best at 1); on a GPU, fill it.
  const int64_t pixels = int64_t(info.resolution) * info.resolution;
  p.batch = run.batch > 0 ? run.batch
                          : (device.is_cuda() ? 256 : std::max<int64_t>(1, 16 * 64 * 64 / pixels));
  p.layers = run.layers.empty() ? default_global_layers(info) : parse_layers(run.layers, info);
  p.prefix_cache_mib = run.prefix_cache_mib;
  p.precision = parse_precision(run.precision, device);
  if (p.images > p.samples) throw usage_error("--images must not exceed --samples");
  if (run.chunk < 1) throw usage_error("invalid --chunk: must be at least 1");
  return p;
}

/// One unit of work: channels [begin, end) of style layer `layer`.
struct Chunk {
  int64_t layer = 0, begin = 0, end = 0;
  [[nodiscard]] int64_t rows() const { return end - begin; }
};

/// Every chunk in the order of the directions' rows: layer by layer, `chunk` channels each.
std::vector<Chunk> plan_chunks(const GeneratorInfo& info, const std::vector<int64_t>& layers,
                               int64_t chunk) {
  std::vector<Chunk> out;
  for (const auto l : layers) {
    const int64_t c_l = info.style_dims[static_cast<size_t>(l)];
    for (int64_t c = 0; c < c_l; c += chunk) out.push_back({l, c, std::min(c_l, c + chunk)});
  }
  return out;
}

/// What this process computes: every chunk, or shard K's contiguous run of them; and where it
/// writes (`global_stats` or `global_stats.shard-K-of-N`, with `.pt`, `.partial.pt`,
/// `.partial.samples.pt`).
struct Share {
  Shard shard;
  std::size_t first = 0, last = 0;     ///< chunks [first, last)
  int64_t row_begin = 0, row_end = 0;  ///< rows of the whole preparation's directions
  std::string base;
  [[nodiscard]] bool sharded() const { return shard.count > 1; }
  [[nodiscard]] fs::path file(const fs::path& models, const std::string& suffix) const {
    return models / (base + suffix);
  }
};

std::string shard_base(std::size_t index, std::size_t count) {
  return "global_stats.shard-" + std::to_string(index) + "-of-" + std::to_string(count);
}

Share plan_share(const std::vector<Chunk>& chunks, const Shard& shard) {
  Share s;
  s.shard = shard;
  std::tie(s.first, s.last) = shard_range(chunks.size(), shard);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (i < s.first) s.row_begin += chunks[i].rows();
    if (i < s.last) s.row_end += chunks[i].rows();
  }
  s.base = s.sharded() ? shard_base(shard.index, shard.count) : "global_stats";
  return s;
}

/// What a checkpoint or shard must agree on to be continued or joined.
json run_key(const PrepareOptions& p, int64_t chunk) {
  return {{"options", p.to_json()}, {"chunk", chunk}};
}

/// The statistics and the direction rows finished so far: from the checkpoint when resuming,
/// else computed (and the sample styles saved for a later resume).
std::vector<torch::Tensor> start_or_resume(const GlobalPrepareRun& run, const Share& share,
                                           const Generator& gen, const PrepareOptions& p,
                                           GlobalStats& stats, StyleStatistics& ss) {
  const auto partial_path = share.file(run.models, ".partial.pt");
  const auto samples_path = share.file(run.models, ".partial.samples.pt");
  std::vector<torch::Tensor> done;
  std::error_code ec;
  if (run.resume && fs::exists(partial_path, ec) && fs::exists(samples_path, ec)) {
    stats = GlobalStats::load(partial_path, gen.info(), /*partial=*/true);
    const json made = {{"options", stats.meta.value("options", json())},
                       {"chunk", stats.meta.value("chunk", run.chunk)}};
    if (made != run_key(p, run.chunk)) {
      throw usage_error("--resume: the checkpoint '" + partial_path.string() +
                        "' was made with other options (" + made.dump() +
                        "); rerun without --resume to start again");
    }
    ss.mean = stats.s_mean;
    ss.std = stats.s_std;
    for (const auto& t : read_tensor_list_pt(samples_path)) ss.sample_styles.push_back(t);
    if (stats.directions.size(0) > 0) done.push_back(stats.directions);
    spdlog::info("resuming: {} of {} channels already done", stats.directions.size(0),
                 share.row_end - share.row_begin);
  } else {
    if (run.resume) {
      spdlog::warn("--resume: no checkpoint '{}', starting from the beginning",
                   partial_path.string());
    }
    spdlog::info("style statistics over {} samples (seed {}, truncation {})", p.samples, p.seed,
                 p.truncation);
    ss = style_statistics(gen, p);
    stats.s_mean = ss.mean;
    stats.s_std = ss.std;
    save_tensors_pt(samples_path, ss.sample_styles);
  }
  stats.layers = p.layers;
  return done;
}

/// The rows computed so far as one [rows, D] tensor (D from the CLIP model when there are none).
torch::Tensor joined(const std::vector<torch::Tensor>& done, int64_t embed_dim) {
  return done.empty() ? torch::zeros({0, embed_dim}) : torch::cat(done, 0);
}

void remove_files(const std::vector<fs::path>& files) {
  std::error_code ec;
  for (const auto& f : files) fs::remove(f, ec);
}

}  // namespace

GlobalPrepareReport prepare_global(const GlobalPrepareRun& run) {
  const auto device = parse_device(run.device);
  const auto shard = parse_shard(run.shard);
  const auto bundle = Bundle::open(run.models);
  const auto& info = bundle.generator();
  const auto p = prepare_options(run, info, device);
  const auto chunks = plan_chunks(info, p.layers, run.chunk);
  const auto share = plan_share(chunks, shard);
  const Generator gen(bundle, device);
  const Clip clip(bundle, device);
  GlobalPrepareReport report;
  report.shard_index = shard.index;
  report.shard_count = shard.count;
  report.channels = share.row_end - share.row_begin;
  if (share.sharded()) {
    spdlog::info("shard {}/{} ({}): channels {}..{} of {} ({} chunks of {})", shard.index,
                 shard.count, shard.source, share.row_begin + 1, share.row_end,
                 chunks.empty() ? 0 : plan_share(chunks, Shard{}).row_end, share.last - share.first,
                 run.chunk);
  }
  GlobalStats stats;
  StyleStatistics ss;
  auto done = start_or_resume(run, share, gen, p, stats, ss);
  int64_t rows_done = 0;
  for (const auto& t : done) rows_done += t.size(0);

  const auto partial_path = share.file(run.models, ".partial.pt");
  const auto samples_path = share.file(run.models, ".partial.samples.pt");
  const InterruptGuard interrupt_guard;
  Progress progress("global prepare", static_cast<int>(report.channels));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t renders = 0;
  int64_t row = 0;  // of this share
  int64_t chunks_run = 0;
  const int64_t embed_dim = clip.info().embed_dim;
  for (std::size_t i = share.first; i < share.last; ++i) {
    const auto& c = chunks[i];
    if (row + c.rows() <= rows_done) {  // finished before the interruption
      row += c.rows();
      continue;
    }
    done.push_back(channel_directions(gen, clip, ss, c.layer, c.begin, c.end, p).cpu());
    renders += c.rows() * 2 * p.images;
    row += c.rows();
    stats.directions = torch::cat(done, 0);
    stats.meta = run_key(p, run.chunk);
    stats.meta["rows_done"] = row;
    stats.save(partial_path);  // checkpoint after every chunk
    progress.update(static_cast<int>(row), "layer " + std::to_string(c.layer));
    ++chunks_run;
    const bool budget_spent = run.max_chunks > 0 && chunks_run >= run.max_chunks;
    if ((budget_spent || InterruptGuard::interrupted()) && row < report.channels) {
      progress.finish();
      spdlog::warn("stopped after {} chunks ({} of {} channels): continue with --resume",
                   chunks_run, row, report.channels);
      report.exit_code = static_cast<int>(ExitCode::kInterrupted);
      report.file = partial_path;
      report.channels_done = row;
      return report;
    }
  }
  progress.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats.directions = joined(done, embed_dim);
  report.channels_done = report.channels;
  report.file = share.file(run.models, ".pt");
  if (share.sharded()) {
    stats.meta = run_key(p, run.chunk);
    stats.meta.update({{"shard", {{"index", shard.index}, {"count", shard.count}}},
                       {"rows", {share.row_begin, share.row_end}},
                       {"renders", renders},
                       {"seconds", secs},
                       {"device", device.str()}});
    stats.save(report.file);
    remove_files({partial_path, samples_path});
    spdlog::info(
        "shard {}/{}: {} channel directions in {:.1f} s; when all {} shards are done, "
        "join them with: styleclip global merge --models {}",
        shard.index, shard.count, report.channels, secs, shard.count, run.models.string());
    return report;
  }
  report.section = {{"layers", p.layers},
                    {"options", p.to_json()},
                    {"channels", report.channels},
                    {"renders", renders},
                    {"seconds", secs},
                    {"renders_per_second", secs > 0 ? renders / secs : 0.0},
                    {"device", device.str()}};
  stats.meta = report.section;
  stats.save(report.file);
  Bundle::add_part(run.models, "global_stats", report.file, report.section);
  remove_files({partial_path, samples_path});
  spdlog::info("{} channel directions from {} renders in {:.1f} s ({:.1f} renders/s)",
               report.channels, renders, secs, secs > 0 ? renders / secs : 0.0);
  return report;
}

namespace {

/// The finished shard files in `models`, by shard count, then index.
std::map<std::size_t, std::map<std::size_t, fs::path>> find_shards(const fs::path& models) {
  static const std::regex name(R"(global_stats\.shard-(\d{1,6})-of-(\d{1,6})\.pt)");
  std::map<std::size_t, std::map<std::size_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(models, ec)) {
    std::smatch m;
    const auto file = e.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    out[std::stoul(m[2].str())][std::stoul(m[1].str())] = e.path();
  }
  return out;
}

std::string join_numbers(const std::vector<std::size_t>& v) {
  std::string s;
  for (const auto n : v) s += (s.empty() ? "" : ", ") + std::to_string(n);
  return s;
}

/// Shard 1's statistics must be every shard's: equal when all ran on the same kind of device;
/// within float noise (a warning) when not; anything more means another generator or seed.
void check_same_statistics(const GlobalStats& first, const GlobalStats& s, const fs::path& file) {
  bool equal = true;
  for (size_t l = 0; l < first.s_mean.size(); ++l) {
    if (torch::equal(first.s_mean[l], s.s_mean[l]) && torch::equal(first.s_std[l], s.s_std[l])) {
      continue;
    }
    equal = false;
    if (!torch::allclose(first.s_mean[l], s.s_mean[l], 1e-4, 1e-6) ||
        !torch::allclose(first.s_std[l], s.s_std[l], 1e-4, 1e-6)) {
      throw input_error("cannot merge '" + file.string() +
                        "': its style statistics differ from shard 1's (layer " +
                        std::to_string(l) +
                        "): the shards were made from different generators; prepare it again");
    }
  }
  if (!equal) {
    spdlog::warn(
        "'{}': style statistics differ from shard 1's within float noise (another kind "
        "of device?); the merged file uses shard 1's",
        file.string());
  }
}

}  // namespace

GlobalPrepareReport merge_global_shards(const fs::path& models) {
  const auto bundle = Bundle::open(models);
  const auto& info = bundle.generator();
  const auto found = find_shards(models);
  if (found.empty()) {
    throw input_error("no finished shards (global_stats.shard-K-of-N.pt) in '" + models.string() +
                      "': run styleclip global prepare --shard K/N on each machine first");
  }
  if (found.size() > 1) {
    std::vector<std::size_t> counts;
    for (const auto& [n, files] : found) counts.push_back(n);
    throw input_error("'" + models.string() + "' holds shards of different runs (of " +
                      join_numbers(counts) + " shards): remove the stale ones");
  }
  const auto& [count, files] = *found.begin();
  std::vector<std::size_t> missing;
  for (std::size_t k = 1; k <= count; ++k) {
    if (!files.count(k)) missing.push_back(k);
  }
  if (!missing.empty()) {
    throw input_error("cannot merge '" + models.string() + "': shard" +
                      (missing.size() > 1 ? "s " : " ") + join_numbers(missing) + " of " +
                      std::to_string(count) + " " + (missing.size() > 1 ? "are" : "is") +
                      " not finished: run (or --resume) styleclip global prepare --shard " +
                      std::to_string(missing.front()) + "/" + std::to_string(count) +
                      " with the same options");
  }
  GlobalStats merged;
  std::vector<torch::Tensor> rows;
  json key;
  std::vector<Chunk> chunks;
  int64_t renders = 0;
  double seconds = 0;
  std::set<std::string> devices;
  for (const auto& [k, file] : files) {
    auto s = GlobalStats::load(file, info, /*partial=*/true);
    const json made = {{"options", s.meta.value("options", json())},
                       {"chunk", s.meta.value("chunk", json())}};
    if (k == 1) {
      key = made;
      merged.layers = s.layers;
      merged.s_mean = s.s_mean;
      merged.s_std = s.s_std;
      chunks = plan_chunks(info, s.layers, made["chunk"].get<int64_t>());
    } else if (made != key) {
      throw input_error("cannot merge '" + file.string() + "': made with other options (" +
                        made.dump() + ") than shard 1 (" + key.dump() + "); prepare it again");
    } else {
      check_same_statistics(merged, s, file);
    }
    const auto share = plan_share(chunks, Shard{k, count, ""});
    if (s.directions.size(0) != share.row_end - share.row_begin ||
        s.meta.value("rows", json()) != json({share.row_begin, share.row_end})) {
      throw input_error("cannot merge '" + file.string() + "': it holds " +
                        std::to_string(s.directions.size(0)) + " rows, shard " + std::to_string(k) +
                        "/" + std::to_string(count) + " should hold rows " +
                        std::to_string(share.row_begin) + ".." + std::to_string(share.row_end) +
                        "; prepare it again");
    }
    rows.push_back(s.directions);
    renders += s.meta.value("renders", int64_t(0));
    seconds += s.meta.value("seconds", 0.0);
    devices.insert(s.meta.value("device", std::string("?")));
  }
  merged.directions = torch::cat(rows, 0);
  std::string device;
  for (const auto& d : devices) device += (device.empty() ? "" : ",") + d;
  GlobalPrepareReport report;
  report.channels = report.channels_done = merged.directions.size(0);
  report.shard_count = count;
  report.section = {{"layers", merged.layers},
                    {"options", key["options"]},
                    {"channels", report.channels},
                    {"renders", renders},
                    {"seconds", seconds},
                    {"renders_per_second", seconds > 0 ? renders / seconds : 0.0},
                    {"device", device},
                    {"shards", count}};
  merged.meta = report.section;
  report.file = models / "global_stats.pt";
  merged.save(report.file);
  Bundle::add_part(models, "global_stats", report.file, report.section);
  std::vector<fs::path> shard_files;
  for (const auto& [k, file] : files) shard_files.push_back(file);
  remove_files(shard_files);
  spdlog::info("merged {} shards: {} channel directions ({} renders, {:.1f} s of work)", count,
               report.channels, renders, seconds);
  return report;
}

}  // namespace styleclip
