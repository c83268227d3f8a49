// bench_photo — times the photo pipeline's models: the e4e encoder (one aligned face → W+) and
// LPIPS-VGG (the projector's perceptual term, forward and backward), for comparison with the same
// TorchScript files called from Python (bench/photo_reference.py).
//
//   bench_photo --models DIR [--batch B] [--reps N] [--warmup W] [--threads T]
//               [--device auto|cpu|cuda[:N]] [--precision auto|fp32|tf32|bf16|fp16]
//
// Inputs are random images in [-1, 1] from seed 0 at the encoder's input size (the crop is
// resized by Encoder::encode; timing it at that size leaves the resize out) and at 256 px for
// LPIPS. Prints one JSON object.
#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <styleclip/error.h>
#include <styleclip/models/encoder.h>
#include <styleclip/models/lpips.h>
#include <styleclip/runtime.h>

#include "bench_support.h"

int main(int argc, char** argv) {
  using namespace styleclip;
  int64_t batch = 1;
  int reps = 5;
  int warmup = 2;
  BenchCommon common;
  try {
    for (BenchArgs arg(argc, argv); arg.next();) {
      if (common.take(arg)) continue;
      if (arg.is("--batch"))
        batch = std::stoll(arg.value());
      else if (arg.is("--reps"))
        reps = std::stoi(arg.value());
      else if (arg.is("--warmup"))
        warmup = std::stoi(arg.value());
      else
        arg.unknown();
    }
    const auto setup = common.open();
    const auto& bundle = setup.bundle;
    const auto device = setup.device;
    const auto precision = setup.precision;
    const auto sync = [&] { synchronize_device(device); };
    const auto time_it = [&](const std::function<void()>& f) {
      for (int r = 0; r < warmup; ++r) f();
      sync();
      reset_peak_device_memory(device);
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) f();
      sync();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    };
    auto rng = at::make_generator<at::CPUGeneratorImpl>(0);
    nlohmann::json out = {{"impl", "cpp"},
                          {"device", device.str()},
                          {"precision", to_string(precision)},
                          {"batch", batch}};
    if (bundle.has("encoder")) {
      const Encoder enc(bundle, device);
      const int s = enc.input_size();
      const auto x = (torch::rand({batch, 3, s, s}, rng) * 2 - 1).to(device);
      torch::NoGradGuard no_grad;
      const PrecisionScope scope(precision, device);
      torch::Tensor w;
      const double secs = time_it([&] { w = enc.encode(x); });
      out["encoder_input"] = s;
      out["encoder_ms_per_image"] = secs * 1e3 / double(batch);
      out["encoder_peak_device_mb"] = megabytes(peak_device_memory(device));
      out["encoder_checksum"] = w.abs().mean().item<double>();
    }
    if (bundle.has("lpips")) {
      const Lpips lp(bundle, device);
      const auto a = (torch::rand({batch, 3, 256, 256}, rng) * 2 - 1).to(device);
      const auto b = (torch::rand({batch, 3, 256, 256}, rng) * 2 - 1).to(device);
      const PrecisionScope scope(precision, device);
      double d = 0;
      const double secs = time_it([&] {
        const auto y = a.clone().requires_grad_(true);
        const auto dist = lp.distance(y, b).sum();
        dist.backward();
        d = dist.item<double>();
      });
      out["lpips_fwd_bwd_ms_per_image"] = secs * 1e3 / double(batch);
      out["lpips_peak_device_mb"] = megabytes(peak_device_memory(device));
      out["lpips_checksum"] = d;
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    out["peak_rss_mb"] = double(u.ru_maxrss) / 1024.0;
    out["threads"] = at::get_num_threads();
    std::cout << out.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_photo: " << torch_message(e) << "\n";
    return 2;
  }
}
