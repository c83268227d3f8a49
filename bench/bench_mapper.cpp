// bench_mapper — times engine 2: mapper training steps (mapper_train_step, Adam) and mapper
// inference (latents per second through w + 0.1·M(w) and the generator), for comparison with the
// same computation in Python (bench/mapper_reference.py) on the same TorchScript models.
//
//   bench_mapper --models DIR --dump DIR [--steps N] [--warmup W] [--batch B] [--infer-batch K]
//                [--threads T] [--device auto|cpu|cuda[:N]] [--precision auto|fp32|tf32|bf16|fp16]
//
// --dump receives the initial mapper, the latents and the text embedding so that Python trains
// from identical weights on identical batches. Prints one JSON object.
#include <sys/resource.h>

#include <chrono>
#include <iostream>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/mapper.h>
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include "bench_support.h"

int main(int argc, char** argv) {
  using namespace styleclip;
  std::string dump;
  int64_t steps = 30;
  int64_t warmup = 5;
  int64_t batch = 2;
  int64_t infer_batch = 16;
  BenchCommon common;
  try {
    for (BenchArgs arg(argc, argv); arg.next();) {
      if (common.take(arg)) continue;
      if (arg.is("--dump"))
        dump = arg.value();
      else if (arg.is("--steps"))
        steps = std::stoll(arg.value());
      else if (arg.is("--warmup"))
        warmup = std::stoll(arg.value());
      else if (arg.is("--batch"))
        batch = std::stoll(arg.value());
      else if (arg.is("--infer-batch"))
        infer_batch = std::stoll(arg.value());
      else
        arg.unknown();
    }
    if (dump.empty()) throw std::invalid_argument("--dump DIR is required");
    const auto setup = common.open();
    const auto& bundle = setup.bundle;
    const auto device = setup.device;
    const auto precision = setup.precision;
    const auto sync = [&] { synchronize_device(device); };
    const Generator gen(bundle, device);
    const Clip clip(bundle, device);
    const auto& info = gen.info();
    torch::Tensor latents, text;
    {
      torch::NoGradGuard no_grad;
      auto rng = at::make_generator<at::CPUGeneratorImpl>(0);
      latents = gen.broadcast(gen.truncate(gen.mapping(torch::randn({64, info.z_dim}, rng)), 0.7));
      text = clip.encode_text({"purple hair"});
    }
    MapperTrainOptions t;
    t.optimizer = "adam";
    t.lr = 0.01;
    t.id_lambda = 0.0;
    t.batch = batch;
    t.precision = precision;
    LevelsMapperOptions mo;
    mo.num_ws = info.num_ws;
    mo.w_dim = info.w_dim;
    LevelsMapper mapper(mo);
    save_mapper(dump + "/mapper0.pt", mapper, nlohmann::json::object());
    save_tensor_pt(dump + "/latents.pt", latents.cpu());
    save_tensor_pt(dump + "/text.pt", text.cpu());
    mapper->to(device);
    const ClipLoss clip_loss(clip, info.resolution, ClipInput::kRaw);
    auto opt = make_mapper_optimizer(mapper, t);
    const auto rows = [&](int64_t s) {
      return latents.slice(0, (s * batch) % 64, (s * batch) % 64 + batch);
    };
    for (int64_t s = 0; s < warmup; ++s)
      mapper_train_step(mapper, *opt, gen, clip_loss, nullptr, text, rows(s), t);
    sync();
    reset_peak_device_memory(device);
    auto t0 = std::chrono::steady_clock::now();
    MapperStepLosses last;
    for (int64_t s = warmup; s < warmup + steps; ++s) {
      last = mapper_train_step(mapper, *opt, gen, clip_loss, nullptr, text, rows(s), t);
    }
    sync();
    const double train_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto train_peak = peak_device_memory(device);

    torch::NoGradGuard no_grad;
    mapper->eval();
    // Inference batches beyond the 64 stored latents repeat them.
    const auto x = latents.repeat({(infer_batch + 63) / 64, 1, 1}).slice(0, 0, infer_batch);
    const PrecisionScope scope(precision, device);
    (void)gen.synthesis(mapper->apply(x, 0.1));
    sync();
    reset_peak_device_memory(device);
    constexpr int kReps = 5;
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kReps; ++r) (void)gen.synthesis(mapper->apply(x, 0.1));
    sync();
    const double infer_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kReps;
    const auto infer_peak = peak_device_memory(device);
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    std::cout << nlohmann::json{{"impl", "cpp"},
                                {"device", device.str()},
                                {"precision", to_string(precision)},
                                {"train_peak_device_mb", megabytes(train_peak)},
                                {"infer_peak_device_mb", megabytes(infer_peak)},
                                {"train_steps_per_second", double(steps) / train_s},
                                {"train_ms_per_step", train_s / double(steps) * 1e3},
                                {"final_loss", last.loss},
                                {"infer_latents_per_second", double(infer_batch) / infer_s},
                                {"batch", batch},
                                {"infer_batch", infer_batch},
                                {"peak_rss_mb", double(u.ru_maxrss) / 1024.0},
                                {"threads", at::get_num_threads()}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_mapper: " << torch_message(e) << "\n";
    return 2;
  }
}
