// `styleclip global prepare` — style-space statistics and per-channel CLIP directions for
// `edit --method global` (algorithms §3.2–3.3), written into the bundle. Chunked, with a
// checkpoint after every chunk and `--resume`.
#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/runtime.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct PrepareCliOptions {
  std::string models;
  int64_t samples = 100000;
  int64_t images = 100;
  std::string layers;
  uint64_t seed = 5;
  std::optional<int64_t> class_index;
  int64_t batch = 0;  // 0: automatic, see run_prepare
  int64_t chunk = 32;
  int64_t max_chunks = 0;
  int64_t prefix_cache_mib = 2048;
  bool resume = false;
  std::string device = "auto";
  std::string precision = "auto";
};

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
    out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty()) throw usage_error("invalid --layers '" + spec + "': no layer given");
  return out;
}

void update_manifest(const fs::path& dir, const fs::path& file, const json& section) {
  const auto mpath = dir / "manifest.json";
  std::ifstream in(mpath);
  json m = json::parse(in);
  m["files"]["global_stats"] = {{"path", file.filename().string()},
                                {"sha256", sha256_file(file)},
                                {"bytes", static_cast<int64_t>(fs::file_size(file))}};
  m["global_stats"] = section;
  write_file_atomic(mpath, m.dump(2) + "\n");
}

int run_prepare(const PrepareCliOptions& o) {
  const auto device = parse_device(o.device);
  const auto precision = parse_precision(o.precision, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const auto& info = bundle.generator();
  PrepareOptions p;
  p.class_index = check_class(o.class_index, info, models, true, "--samples");
  p.samples = o.samples;
  p.images = o.images;
  p.seed = o.seed;
  // On the CPU, per-sample grouped convolutions stop paying beyond ~16 renders of 64 px
  // (bench/RESULTS.md: 64 px best at 16, 256 px best at 1); on a GPU, fill it.
  const int64_t pixels = int64_t(info.resolution) * info.resolution;
  p.batch = o.batch > 0 ? o.batch
                        : (device.is_cuda() ? 256 : std::max<int64_t>(1, 16 * 64 * 64 / pixels));
  p.layers = o.layers.empty() ? default_global_layers(info) : parse_layers(o.layers, info);
  p.prefix_cache_mib = o.prefix_cache_mib;
  p.precision = precision;
  if (p.images > p.samples) throw usage_error("--images must not exceed --samples");
  const Generator gen(bundle, device);
  const Clip clip(bundle, device);

  const auto final_path = models / "global_stats.pt";
  const auto partial_path = models / "global_stats.partial.pt";
  const auto samples_path = models / "global_stats.partial.samples.pt";
  int64_t total_rows = 0;
  for (const auto l : p.layers) total_rows += info.style_dims[static_cast<size_t>(l)];

  GlobalStats stats;
  StyleStatistics ss;
  std::vector<torch::Tensor> done;  // direction rows finished, in order
  std::error_code ec;
  if (o.resume && fs::exists(partial_path, ec) && fs::exists(samples_path, ec)) {
    stats = GlobalStats::load(partial_path, info, /*partial=*/true);
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
    if (o.resume)
      spdlog::warn("--resume: no checkpoint in '{}', starting from the beginning", models.string());
    spdlog::info("style statistics over {} samples (seed {}, truncation {})", p.samples, p.seed,
                 p.truncation);
    ss = style_statistics(gen, p);
    stats.layers = p.layers;
    stats.s_mean = ss.mean;
    stats.s_std = ss.std;
    save_tensors_pt(samples_path, ss.sample_styles);
  }
  stats.layers = p.layers;
  int64_t rows_done = 0;
  for (const auto& t : done) rows_done += t.size(0);

  Progress progress("global prepare", static_cast<int>(total_rows));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t renders = 0;
  int64_t row = 0;
  int64_t chunks = 0;
  for (const auto l : p.layers) {
    const int64_t c_l = info.style_dims[static_cast<size_t>(l)];
    for (int64_t c = 0; c < c_l; c += o.chunk) {
      const int64_t end = std::min(c_l, c + o.chunk);
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
      if (o.max_chunks > 0 && ++chunks >= o.max_chunks && row < total_rows) {
        progress.finish();
        spdlog::warn("stopped after {} chunks ({} of {} channels): continue with --resume", chunks,
                     row, total_rows);
        return static_cast<int>(ExitCode::kInterrupted);
      }
    }
  }
  progress.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats.directions = torch::cat(done, 0);
  const json section = {
      {"layers", p.layers},     {"options", p.to_json()},
      {"channels", total_rows}, {"renders", renders},
      {"seconds", secs},        {"renders_per_second", secs > 0 ? renders / secs : 0.0},
      {"device", device.str()}};
  stats.meta = section;
  stats.save(final_path);
  update_manifest(models, final_path, section);
  fs::remove(partial_path, ec);
  fs::remove(samples_path, ec);
  spdlog::info("{} channel directions from {} renders in {:.1f} s ({:.1f} renders/s)", total_rows,
               renders, secs, secs > 0 ? renders / secs : 0.0);
  std::cout << final_path.string() << "\n";
  return 0;
}

}  // namespace

void setup_global(CLI::App& app, Registry& reg) {
  auto* global = app.add_subcommand("global", "global style-space directions");
  global->require_subcommand(1);
  auto o = std::make_shared<PrepareCliOptions>();
  auto* sub = global->add_subcommand(
      "prepare", "compute style statistics and per-channel CLIP directions into the bundle");
  add_models_option(*sub, o->models);
  sub->add_option("--samples", o->samples, "W samples for the style mean/std")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(10000000)));
  sub->add_option("--images", o->images, "sample images per channel")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(100000)));
  sub->add_option("--layers", o->layers,
                  "style layers, e.g. 0,2,3 (default: non-toRGB layers up to 128 px)");
  sub->add_option("--seed", o->seed, "seed of the W samples")->capture_default_str();
  add_class_option(*sub, o->class_index);
  sub->add_option("--batch", o->batch,
                  "renders per generator call (default: 16 at 64 px down to 1 at 256 px on CPU, "
                  "256 on CUDA)")
      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  sub->add_option("--chunk", o->chunk, "channels between checkpoints")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  sub->add_option("--prefix-cache", o->prefix_cache_mib,
                  "MiB for reusing the layers before the perturbed one across its channels "
                  "(0: render every image whole; same result)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--resume", o->resume, "continue an interrupted preparation from its checkpoint");
  sub->add_option(
         "--max-chunks", o->max_chunks,
         "stop (exit 130, checkpoint kept) after this many chunks, e.g. to fit a time-limited job; "
         "continue with --resume")
      ->check(CLI::NonNegativeNumber);
  add_device_options(*sub, o->device, o->precision);
  reg.push_back({sub, [o] { return run_prepare(*o); }});
}

}  // namespace styleclip::cli
