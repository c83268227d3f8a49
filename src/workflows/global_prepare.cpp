// Global-direction preparation with checkpoints (global_prepare.h); the statistics and the
// per-channel directions are engines/global_directions.h.
#include <styleclip/workflows/global_prepare.h>

#include <algorithm>
#include <chrono>
#include <sstream>

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

/// The statistics and the direction rows finished so far: from the checkpoint when resuming,
/// else computed (and the sample styles saved for a later resume).
std::vector<torch::Tensor> start_or_resume(const GlobalPrepareRun& run, const Generator& gen,
                                           const PrepareOptions& p, int64_t total_rows,
                                           GlobalStats& stats, StyleStatistics& ss) {
  const auto partial_path = run.models / "global_stats.partial.pt";
  const auto samples_path = run.models / "global_stats.partial.samples.pt";
  std::vector<torch::Tensor> done;
  std::error_code ec;
  if (run.resume && fs::exists(partial_path, ec) && fs::exists(samples_path, ec)) {
    stats = GlobalStats::load(partial_path, gen.info(), /*partial=*/true);
    if (stats.meta.value("options", json()) != p.to_json()) {
      throw usage_error(
          "--resume: the checkpoint '" + partial_path.string() + "' was made with other options (" +
          stats.meta.value("options", json()).dump() + "); rerun without --resume to start again");
    }
    ss.mean = stats.s_mean;
    ss.std = stats.s_std;
    for (const auto& t : read_tensor_list_pt(samples_path)) ss.sample_styles.push_back(t);
    if (stats.directions.size(0) > 0) done.push_back(stats.directions);
    spdlog::info("resuming: {} of {} channels already done", stats.directions.size(0), total_rows);
  } else {
    if (run.resume) {
      spdlog::warn("--resume: no checkpoint in '{}', starting from the beginning",
                   run.models.string());
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

}  // namespace

GlobalPrepareReport prepare_global(const GlobalPrepareRun& run) {
  const auto device = parse_device(run.device);
  const auto bundle = Bundle::open(run.models);
  const auto& info = bundle.generator();
  const auto p = prepare_options(run, info, device);
  const Generator gen(bundle, device);
  const Clip clip(bundle, device);
  GlobalPrepareReport report;
  for (const auto l : p.layers) report.channels += info.style_dims[static_cast<size_t>(l)];
  GlobalStats stats;
  StyleStatistics ss;
  auto done = start_or_resume(run, gen, p, report.channels, stats, ss);
  int64_t rows_done = 0;
  for (const auto& t : done) rows_done += t.size(0);

  const auto partial_path = run.models / "global_stats.partial.pt";
  const InterruptGuard interrupt_guard;
  Progress progress("global prepare", static_cast<int>(report.channels));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t renders = 0;
  int64_t row = 0;
  int64_t chunks = 0;
  for (const auto l : p.layers) {
    const int64_t c_l = info.style_dims[static_cast<size_t>(l)];
    for (int64_t c = 0; c < c_l; c += run.chunk) {
      const int64_t end = std::min(c_l, c + run.chunk);
      if (row + (end - c) <= rows_done) {  // finished before the interruption
        row += end - c;
        continue;
      }
      done.push_back(channel_directions(gen, clip, ss, l, c, end, p).cpu());
      renders += (end - c) * 2 * p.images;
      row += end - c;
      stats.directions = torch::cat(done, 0);
      stats.meta = {{"options", p.to_json()}, {"rows_done", row}};
      stats.save(partial_path);  // checkpoint after every chunk
      progress.update(static_cast<int>(row), "layer " + std::to_string(l));
      ++chunks;
      const bool budget_spent = run.max_chunks > 0 && chunks >= run.max_chunks;
      if ((budget_spent || InterruptGuard::interrupted()) && row < report.channels) {
        progress.finish();
        spdlog::warn("stopped after {} chunks ({} of {} channels): continue with --resume", chunks,
                     row, report.channels);
        report.exit_code = static_cast<int>(ExitCode::kInterrupted);
        report.file = partial_path;
        report.channels_done = row;
        return report;
      }
    }
  }
  progress.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats.directions = torch::cat(done, 0);
  report.section = {{"layers", p.layers},
                    {"options", p.to_json()},
                    {"channels", report.channels},
                    {"renders", renders},
                    {"seconds", secs},
                    {"renders_per_second", secs > 0 ? renders / secs : 0.0},
                    {"device", device.str()}};
  stats.meta = report.section;
  report.file = run.models / "global_stats.pt";
  stats.save(report.file);
  Bundle::add_part(run.models, "global_stats", report.file, report.section);
  std::error_code ec;
  fs::remove(partial_path, ec);
  fs::remove(run.models / "global_stats.partial.samples.pt", ec);
  spdlog::info("{} channel directions from {} renders in {:.1f} s ({:.1f} renders/s)",
               report.channels, renders, secs, secs > 0 ? renders / secs : 0.0);
  report.channels_done = report.channels;
  return report;
}

}  // namespace styleclip
