// bench_global — times engine 3: the batched per-channel direction preparation
// (`channel_directions`) and the edit latency, for comparison with the reference procedure
// written plainly in Python (bench/global_reference.py, one render per call). See bench/README.md.
//
//   bench_global --models DIR [--channels N] [--images K] [--batch B] [--samples S] [--threads T]
//                [--dump DIR] [--device auto|cpu|cuda[:N]] [--precision auto|fp32|tf32|bf16|fp16]
//
// --dump writes the inputs the Python side needs (style means, stds and sample codes) so both
// sides render identical styles. Prints one JSON object.
#include <sys/resource.h>

#include <chrono>
#include <iostream>
#include <string>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/global_directions.h>
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include "bench_support.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace styleclip;
  std::string dump;
  int64_t channels = 16;
  int64_t images = 4;
  int64_t batch = 64;
  int64_t samples = 2000;
  BenchCommon common;
  try {
    for (BenchArgs arg(argc, argv); arg.next();) {
      if (common.take(arg)) continue;
      if (arg.is("--dump"))
        dump = arg.value();
      else if (arg.is("--channels"))
        channels = std::stoll(arg.value());
      else if (arg.is("--images"))
        images = std::stoll(arg.value());
      else if (arg.is("--batch"))
        batch = std::stoll(arg.value());
      else if (arg.is("--samples"))
        samples = std::stoll(arg.value());
      else
        arg.unknown();
    }
    const auto setup = common.open();
    const auto& bundle = setup.bundle;
    const auto device = setup.device;
    const auto precision = setup.precision;
    const auto sync = [&] { synchronize_device(device); };
    const Generator gen(bundle, device);
    const Clip clip(bundle, device);
    PrepareOptions p;
    p.precision = precision;
    p.samples = samples;
    p.images = images;
    p.batch = batch;
    const auto stats = style_statistics(gen, p);
    const int64_t layer = default_global_layers(gen.info()).front();
    if (!dump.empty()) {
      save_tensors_pt(dump + "/mean.pt", stats.mean);
      save_tensors_pt(dump + "/std.pt", stats.std);
      save_tensors_pt(dump + "/samples.pt", stats.sample_styles);
    }
    (void)channel_directions(gen, clip, stats, layer, 0, 1, p);  // warm-up
    sync();
    reset_peak_device_memory(device);
    auto t0 = std::chrono::steady_clock::now();
    const auto dirs = channel_directions(gen, clip, stats, layer, 0, channels, p).cpu();
    const double prep = seconds_since(t0);
    const auto prep_peak = peak_device_memory(device);
    if (!dump.empty()) save_tensor_pt(dump + "/directions_cpp.pt", dirs);

    // Edit latency: the text direction (2 × 79 templates), then Δs, S + αΔs and one synthesis.
    GlobalStats g;
    g.layers = {layer};
    g.s_mean = stats.mean;
    g.s_std = stats.std;
    g.directions =
        torch::cat(
            {dirs, torch::zeros({gen.info().style_dims[size_t(layer)] - channels, dirs.size(1)})},
            0)
            .to(device);
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(precision, device);
    const auto s = gen.styles(gen.broadcast(gen.mapping(gen.seed_z(0).unsqueeze(0))));
    (void)text_direction(clip, "smiling face", "face");
    t0 = std::chrono::steady_clock::now();
    const auto dt = text_direction(clip, "smiling face", "face");
    const double text_s = seconds_since(t0);
    constexpr int kReps = 20;
    (void)gen.synthesis_from_styles(apply_delta(s, global_delta(g, gen.info(), dt, 0.1), 4.1));
    sync();
    reset_peak_device_memory(device);
    // Latency, not throughput: each edit is waited for (the image a user gets back).
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kReps; ++r) {
      (void)gen.synthesis_from_styles(apply_delta(s, global_delta(g, gen.info(), dt, 0.1), 4.1));
      sync();
    }
    const double edit_s = seconds_since(t0) / kReps;
    const auto edit_peak = peak_device_memory(device);
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const int64_t renders = channels * 2 * images;
    std::cout << nlohmann::json{{"impl", "cpp"},
                                {"device", device.str()},
                                {"precision", to_string(precision)},
                                {"prepare_peak_device_mb", megabytes(prep_peak)},
                                {"edit_peak_device_mb", megabytes(edit_peak)},
                                {"layer", layer},
                                {"renders", renders},
                                {"prepare_seconds", prep},
                                {"renders_per_second", renders / prep},
                                {"batch", batch},
                                {"text_direction_ms", text_s * 1e3},
                                {"edit_ms", edit_s * 1e3},
                                {"peak_rss_mb", double(u.ru_maxrss) / 1024.0},
                                {"threads", at::get_num_threads()},
                                {"resolution", gen.info().resolution}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_global: " << torch_message(e) << "\n";
    return 2;
  }
}
