// bench_optimize — times engine 1 (`styleclip::optimize`) on a bundle, for comparison with the
// same loop in Python (bench/optimize_reference.py); see bench/README.md.
//
//   bench_optimize --models DIR [--steps N] [--batch B] [--warmup W] [--threads T] [--json]
//                  [--device auto|cpu|cuda[:N]] [--precision auto|fp32|tf32|bf16|fp16]
//                  [--cuda-graph]
//   bench_optimize --models DIR [--batch B] [--dump-text FILE] [--dump-start FILE]
//   bench_optimize --models DIR --render N [--batch B] [--threads T] [--json]
//
// The timed run: B start latents from seeds 0..B-1 (mapping, truncation 0.7, broadcast to W+),
// the text "a smiling face", W warm-up steps in a separate optimize call (not timed), then N
// timed steps (l2_lambda 0.008, id_lambda 0, W+, raw CLIP input). The time is the engine's own
// loop time (OptimizeResult::seconds), without its setup and final metrics. The dump modes write
// the text embedding / the start latents with save_tensor_pt, so that the Python side optimises
// identical inputs, and do nothing else. --render N times N renders of the start latents
// (W+ → image, no gradient) after one untimed render, instead of optimising.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/runtime.h>

#include "bench_support.h"

namespace {

constexpr const char* kText = "a smiling face";
constexpr double kTruncation = 0.7;

struct Args {
  std::string models;
  int steps = 30;
  int batch = 1;
  int warmup = 5;
  int threads = 0;
  bool json = false;
  bool cuda_graph = false;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::string dump_text;
  std::string dump_start;
  int render = 0;
};

const char* kUsage =
    "usage: bench_optimize --models DIR [--steps N] [--batch B] [--warmup W] [--threads T] "
    "[--json] [--device D] [--precision P] [--cuda-graph] [--dump-text FILE] [--dump-start FILE]";

int parse_int(const std::string& opt, const std::string& value, int min) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty() || v < min) {
    throw styleclip::usage_error("invalid " + opt + " '" + value +
                                 "': expected an integer >= " + std::to_string(min));
  }
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--json") {
      a.json = true;
      continue;
    }
    if (opt == "--cuda-graph") {
      a.cuda_graph = true;
      continue;
    }
    if (opt == "-h" || opt == "--help") {
      std::cout << kUsage << "\n";
      std::exit(0);
    }
    if (i + 1 >= argc) throw styleclip::usage_error(opt + " needs a value (" + kUsage + ")");
    const std::string v = argv[++i];
    if (opt == "--models") {
      a.models = v;
    } else if (opt == "--steps") {
      a.steps = parse_int(opt, v, 1);
    } else if (opt == "--batch") {
      a.batch = parse_int(opt, v, 1);
    } else if (opt == "--warmup") {
      a.warmup = parse_int(opt, v, 0);
    } else if (opt == "--threads") {
      a.threads = parse_int(opt, v, 0);
    } else if (opt == "--device") {
      a.device = v;
    } else if (opt == "--precision") {
      a.precision = v;
    } else if (opt == "--render") {
      a.render = std::stoi(v);
    } else if (opt == "--dump-text") {
      a.dump_text = v;
    } else if (opt == "--dump-start") {
      a.dump_start = v;
    } else {
      throw styleclip::usage_error("unknown option '" + opt + "' (" + kUsage + ")");
    }
  }
  if (a.models.empty())
    throw styleclip::usage_error(std::string("--models DIR is required (") + kUsage + ")");
  return a;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // kB on Linux
}

torch::Tensor start_latents(const styleclip::Generator& gen, int batch) {
  std::vector<torch::Tensor> zs;
  for (int i = 0; i < batch; ++i) zs.push_back(gen.seed_z(static_cast<uint64_t>(i)));
  const auto w = gen.truncate(gen.mapping(torch::stack(zs)), kTruncation);
  return gen.broadcast(w).contiguous();
}

/// --render N: the generator alone, as `styleclip generate` runs it.
int time_renders(const Args& a, const styleclip::Generator& gen, const torch::Tensor& ws) {
  torch::NoGradGuard no_grad;
  (void)gen.synthesis(ws);
  styleclip::synchronize_device(gen.device());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.render; ++i) (void)gen.synthesis(ws);
  styleclip::synchronize_device(gen.device());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const nlohmann::json out = {{"impl", "cpp"},
                              {"mode", "render"},
                              {"device", gen.device().str()},
                              {"ms_per_render", 1000.0 * secs / a.render},
                              {"peak_rss_mb", peak_rss_mb()},
                              {"batch", a.batch},
                              {"renders", a.render},
                              {"threads", at::get_num_threads()},
                              {"resolution", gen.info().resolution}};
  std::cout << (a.json
                    ? out.dump()
                    : "cpp: " + std::to_string(out["ms_per_render"].get<double>()) + " ms/render")
            << "\n";
  return 0;
}

int run(const Args& a) {
  styleclip::configure_runtime(a.threads);
  const auto bundle = styleclip::Bundle::open(a.models, styleclip::Bundle::Verify::kNone);
  const auto device = styleclip::parse_device(a.device);
  const auto precision = styleclip::parse_precision(a.precision, device);
  const styleclip::Generator gen(bundle, device);
  const styleclip::Clip clip(bundle, device);

  torch::Tensor ws0, text;
  {
    torch::NoGradGuard no_grad;
    ws0 = start_latents(gen, a.batch);
    text = clip.encode_text({kText});
  }
  if (!a.dump_text.empty() || !a.dump_start.empty()) {
    if (!a.dump_text.empty()) styleclip::save_tensor_pt(a.dump_text, text.cpu());
    if (!a.dump_start.empty()) styleclip::save_tensor_pt(a.dump_start, ws0.cpu());
    return 0;
  }

  if (a.render > 0) return time_renders(a, gen, ws0);

  styleclip::OptimizeOptions o;
  o.l2_lambda = 0.008;
  o.id_lambda = 0.0;
  o.space = styleclip::LatentSpace::kWPlus;
  o.clip_input = styleclip::ClipInput::kRaw;
  o.precision = precision;
  o.cuda_graph = a.cuda_graph;
  if (a.warmup > 0) {
    o.steps = a.warmup;
    (void)styleclip::optimize(gen, clip, nullptr, ws0, text, o);
  }
  const double rss_before = peak_rss_mb();
  styleclip::reset_peak_device_memory(device);
  o.steps = a.steps;
  const auto res = styleclip::optimize(gen, clip, nullptr, ws0, text, o);
  double clip_after = 0;
  for (const auto& r : res.rows) clip_after += r.clip_after / double(res.rows.size());

  const auto peak_dev = styleclip::peak_device_memory(device);
  const nlohmann::json out = {
      {"impl", "cpp"},
      {"device", device.str()},
      {"precision", styleclip::to_string(precision)},
      {"cuda_graph", a.cuda_graph},
      {"peak_device_mb", megabytes(peak_dev)},
      {"steps_per_second", res.steps_per_second},
      {"ms_per_step", 1000.0 / res.steps_per_second},
      {"peak_rss_mb", peak_rss_mb()},
      {"peak_rss_before_timed_mb", rss_before},
      {"batch", a.batch},
      {"steps", a.steps},
      {"warmup", a.warmup},
      {"threads", at::get_num_threads()},
      {"resolution", gen.info().resolution},
      {"clip_resolution", clip.info().image_resolution},
      {"final_clip_similarity", clip_after},
  };
  if (a.json) {
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "cpp: " << out["ms_per_step"].get<double>() << " ms/step, peak RSS "
              << out["peak_rss_mb"].get<double>() << " MB (" << a.batch << " x "
              << gen.info().resolution << " px, " << a.steps << " steps)\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const styleclip::Error& e) {
    std::cerr << "bench_optimize: error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::cerr << "bench_optimize: error: " << styleclip::torch_message(e) << "\n";
    return 1;
  }
}
