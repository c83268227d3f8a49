#include <styleclip/engines/device_adam.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>

#include <chrono>
#include <cmath>
#include <optional>

#if defined(STYLECLIP_WITH_CUDA)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#endif

namespace styleclip {

nlohmann::json OptimizeOptions::to_json() const {
  return {{"steps", steps},
          {"lr", lr},
          {"l2_lambda", l2_lambda},
          {"id_lambda", id_lambda},
          {"space", space == LatentSpace::kWPlus ? "W+" : "S"},
          {"mode", free_mode ? "free" : "edit"},
          {"clip_input", to_string(clip_input)},
          {"frame_every", frame_every},
          {"precision", to_string(precision)},
          {"cuda_graph", cuda_graph}};
}

// run_optimization.py `get_lr` (algorithms §1.5).
double optimize_lr(int step, int steps, double lr) {
  const double t = double(step) / double(steps);
  double ramp = std::min(1.0, (1.0 - t) / 0.25);
  ramp = 0.5 - 0.5 * std::cos(ramp * M_PI);
  ramp = ramp * std::min(1.0, t / 0.05);
  return lr * ramp;
}

void validate(const OptimizeOptions& o, bool has_identity_model) {
  if (o.steps < 1)
    throw usage_error("invalid --steps " + std::to_string(o.steps) + ": must be at least 1");
  if (!(o.lr > 0) || !std::isfinite(o.lr))
    throw usage_error("invalid --lr: must be a positive number");
  if (!(o.l2_lambda >= 0) || !std::isfinite(o.l2_lambda)) {
    throw usage_error("invalid --l2-lambda: must be zero or positive");
  }
  if (!(o.id_lambda >= 0) || !std::isfinite(o.id_lambda)) {
    throw usage_error("invalid --id-lambda: must be zero or positive");
  }
  if (o.id_lambda > 0 && !has_identity_model) {
    throw usage_error(
        "--id-lambda needs an identity model, and the bundle has none "
        "(add one with scripts/export_bundle.py --identity, or use --id-lambda 0)");
  }
  if (o.frame_every < 0) throw usage_error("invalid --frames: must be zero or positive");
}

bool cuda_graphs_built() {
#if defined(STYLECLIP_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

void check_cuda_graph(const OptimizeOptions& o, const torch::Device& device) {
  if (!o.cuda_graph) return;
  if (!device.is_cuda()) {
    throw usage_error("--cuda-graph needs a CUDA device (this run is on " + device.str() +
                      "): drop --cuda-graph or use --device cuda");
  }
  if (!cuda_graphs_built()) {
    throw device_error(
        "--cuda-graph: this build has no CUDA graph support (it was built without c10_cuda, "
        "STYLECLIP_CUDA_STATS=OFF): rebuild against a CUDA LibTorch or drop --cuda-graph");
  }
}

namespace {

#if defined(STYLECLIP_WITH_CUDA)
/// TorchScript's graph optimiser off for a scope: its fusers compile kernels on a later run,
/// which a CUDA graph capture cannot contain. configure_runtime() turns it off for the CLI and
/// the benchmarks already; this covers other callers of the library.
class JitOptimizationOff {
 public:
  JitOptimizationOff() : previous_(torch::jit::getGraphExecutorOptimize()) {
    torch::jit::setGraphExecutorOptimize(false);
  }
  ~JitOptimizationOff() { torch::jit::setGraphExecutorOptimize(previous_); }
  JitOptimizationOff(const JitOptimizationOff&) = delete;
  JitOptimizationOff& operator=(const JitOptimizationOff&) = delete;
  JitOptimizationOff(JitOptimizationOff&&) = delete;
  JitOptimizationOff& operator=(JitOptimizationOff&&) = delete;

 private:
  bool previous_;
};
#endif

/// Rows of `t` (dim 0) where `rows` is true, set from `src`.
void restore_rows(torch::Tensor& t, const torch::Tensor& src, const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const auto mask = rows.view({-1}).to(t.device());
  std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
  shape[0] = -1;
  t.copy_(torch::where(mask.view(shape), src, t));
}

}  // namespace

OptimizeResult optimize(const Generator& gen, const Clip& clip, const IdentityModel* identity,
                        const torch::Tensor& ws0, const torch::Tensor& text,
                        const OptimizeOptions& o, const OptimizeCallbacks& callbacks) {
  validate(o, identity != nullptr);
  gen.check_wplus(ws0, "start latent");
  const auto dev = gen.device();
  check_cuda_graph(o, dev);
  // Every forward pass below, the final metrics included, at the chosen precision.
  const PrecisionScope precision(o.precision, dev);
  const auto w0 = ws0.to(dev).detach().contiguous();
  const int64_t n = w0.size(0);
  const auto text_e = text.to(dev).detach();
  const ClipLoss clip_loss(clip, gen.info().resolution, o.clip_input);
  const bool w_space = o.space == LatentSpace::kWPlus;

  OptimizeResult res;
  std::vector<torch::Tensor> s0;
  {
    torch::NoGradGuard no_grad;
    s0 = gen.styles(w0);
    res.images_before = gen.synthesis_from_styles(s0);
  }
  std::optional<IdentityLoss> id_loss;
  if (identity != nullptr) id_loss.emplace(*identity, res.images_before);

  // The optimised tensors: W+, or the non-toRGB style layers (the reference's
  // STYLESPACE_INDICES_WITHOUT_TORGB); toRGB styles stay fixed.
  torch::Tensor w;
  std::vector<torch::Tensor> s;
  std::vector<torch::Tensor> params;
  if (w_space) {
    w = w0.clone().requires_grad_(true);
    params = {w};
  } else {
    for (size_t l = 0; l < s0.size(); ++l) {
      s.push_back(s0[l].clone());
      if (!gen.info().style_is_rgb[l]) {
        s.back().requires_grad_(true);
        params.push_back(s.back());
      }
    }
  }
  DeviceAdam adam(params);

  res.rows.resize(static_cast<size_t>(n));
  // Every piece of per-step state lives on the device and is updated in place: the loop feeds
  // a GPU without waiting (one small host check every kSyncEvery steps: are all rows dead?), and
  // with `cuda_graph` one captured step replays against the same tensors.
  constexpr int kSyncEvery = 10;
  const auto on_dev = torch::TensorOptions().device(dev);
  auto active = torch::ones({n}, on_dev.dtype(torch::kBool));
  auto failed_at = torch::full({n}, -1, on_dev.dtype(torch::kInt64));
  auto step_t = torch::zeros({}, on_dev.dtype(torch::kInt64));  // the step being taken
  auto loss_out = torch::zeros({}, on_dev.dtype(torch::kFloat32));
  const bool want_frames = callbacks.frame && o.frame_every > 0;
  torch::Tensor frame_out;
  if (want_frames) frame_out = torch::empty_like(res.images_before);
  // `good`: per row, the latest parameters whose loss was finite. A row that fails is put back
  // to them after every step (after backward: a leaf in the graph must not change before).
  std::vector<torch::Tensor> good, pre;
  for (const auto& p : params) {
    good.push_back(p.detach().clone());
    pre.push_back(torch::empty_like(p));
  }

  const auto total_loss = [&](const torch::Tensor& img) {
    auto total = clip_loss(img, text_e);
    if (!o.free_mode && o.l2_lambda > 0) {
      total = total + o.l2_lambda * (w_space ? latent_l2(w, w0) : latent_l2(s, s0));
    }
    if (o.id_lambda > 0) total = total + o.id_lambda * (*id_loss)(img);
    return total;
  };
  // One step, at the learning rate set beforehand: no host values, no host reads.
  const auto one_step = [&]() {
    adam.zero_grad();
    const auto img = w_space ? gen.synthesis(w) : gen.synthesis_from_styles(s);
    const auto total = total_loss(img);
    const auto finite = torch::isfinite(total.detach());
    failed_at.copy_(torch::where(active.logical_and(finite.logical_not()), step_t, failed_at));
    active.logical_and_(finite);
    if (want_frames) frame_out.copy_(img.detach());
    for (size_t p = 0; p < params.size(); ++p) pre[p].copy_(params[p].detach());
    const auto loss = torch::where(active, total, torch::zeros_like(total)).sum();
    loss.backward();
    adam.step();
    // Failed rows go back to their last finite values (a no-op for the others); finite rows
    // remember this step's values. Both on the device, every step, without asking which.
    const auto failed = active.logical_not();
    for (size_t p = 0; p < params.size(); ++p) {
      restore_rows(params[p], good[p], failed);
      restore_rows(good[p], pre[p], active);
    }
    loss_out.copy_(loss.detach());
    step_t.add_(1);
  };

#if defined(STYLECLIP_WITH_CUDA)
  // CUDA graphs (optional): a few eager steps on a side stream warm up everything that happens
  // once (cuDNN's choices, library handles, the allocator), then one step is
  // captured and every later step is one replay: a single launch instead of thousands of
  // kernel launches. PyTorch's "whole network capture" recipe (torch.cuda.graphs docs).
  // The state above was made on the ambient stream: finish that before the side stream reads
  // it; the loop ends with a device synchronisation before either goes away (below).
  constexpr int kWarmupSteps = 3;
  std::optional<c10::cuda::CUDAStreamGuard> side_stream;
  std::optional<at::cuda::CUDAGraph> graph;
  std::optional<JitOptimizationOff> jit_off;
  if (o.cuda_graph) {
    synchronize_device(dev);
    side_stream.emplace(c10::cuda::getStreamFromPool(false, dev.index()));
    jit_off.emplace();
  }
  // The first replay-time step: capture it (capturing records the step without running it).
  const auto capture = [&]() {
    // The eager steps' cached blocks go back to the driver first, so that the graph's own
    // memory pool does not come on top of them (a card's memory is the limit at batch 1).
    synchronize_device(dev);
    c10::cuda::CUDACachingAllocator::emptyCache();
    graph.emplace();
    try {
      graph->capture_begin();
      one_step();
      graph->capture_end();
    } catch (const std::exception& e) {
      // End the capture whatever failed, or the stream stays in capture mode (Python's
      // torch.cuda.graph does the same on its way out).
      try {
        graph->capture_end();
      } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the first error counts
      }
      graph.reset();
      const auto m = torch_message(e);
      if (is_out_of_memory(m)) throw;  // the caller's advice (a smaller --batch) fits better
      throw device_error("CUDA graph capture of the optimisation step failed (" + m +
                         "): run without --cuda-graph");
    }
  };
#endif
  const auto t0 = std::chrono::steady_clock::now();
  int step = 0;
  const auto loop = [&]() {
    while (step < o.steps) {
      if (callbacks.should_stop && callbacks.should_stop()) {
        res.stopped = true;
        break;
      }
      adam.set_lr(optimize_lr(step, o.steps, o.lr));
#if defined(STYLECLIP_WITH_CUDA)
      if (o.cuda_graph && step >= kWarmupSteps) {
        if (!graph) capture();
        graph->replay();
      } else {
        one_step();
      }
#else
      one_step();
#endif
      if (want_frames && step % o.frame_every == 0) callbacks.frame(step, frame_out);
      ++step;
      if (callbacks.progress) {
        // One read for both numbers: a single wait for the device.
        const auto now =
            torch::stack({active.sum().to(torch::kFloat64), loss_out.to(torch::kFloat64)}).cpu();
        const auto alive = now[0].item<double>();
        callbacks.progress(step, o.steps, alive > 0 ? now[1].item<double>() / alive : 0.0);
      }
      if ((step % kSyncEvery == 1 || step == o.steps) && !active.any().item<bool>()) break;
    }
  };
#if defined(STYLECLIP_WITH_CUDA)
  try {
    loop();
  } catch (const std::exception&) {
    // A replay may still be running on the side stream: let it finish before the graph's pool
    // and the step's state are freed on the way out.
    try {
      synchronize_device(dev);
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the first error counts
    }
    throw;
  }
#else
  loop();
#endif
  synchronize_device(dev);
  const double loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#if defined(STYLECLIP_WITH_CUDA)
  graph.reset();  // its memory pool: nothing below uses what the captured step allocated
  side_stream.reset();
  jit_off.reset();
#endif
  const auto failed = active.logical_not();
  for (size_t p = 0; p < params.size(); ++p) restore_rows(params[p], good[p], failed);
  const auto failed_steps = failed_at.cpu();
  for (int64_t i = 0; i < n; ++i) {
    const auto at_step = failed_steps[i].item<int64_t>();
    if (at_step < 0) continue;
    auto& row = res.rows[static_cast<size_t>(i)];
    row.ok = false;
    row.steps_done = static_cast<int>(at_step);
    row.error = "loss became NaN or Inf at step " + std::to_string(at_step) +
                " (try a smaller --lr); kept its last finite latent";
  }

  // Final metrics, from the final latent (the image and the saved latent agree; the reference
  // keeps the image from before its last step).
  torch::NoGradGuard no_grad;
  if (w_space) {
    res.ws = w.detach();
    res.styles = gen.styles(res.ws);
  } else {
    res.ws = w0;
    for (const auto& t : s) res.styles.push_back(t.detach());
  }
  res.images_after = gen.synthesis_from_styles(res.styles);
  const auto before = clip_loss.similarity(res.images_before, text_e).cpu();
  const auto after = clip_loss.similarity(res.images_after, text_e).cpu();
  const auto l2 = (w_space ? latent_l2(res.ws, w0) : latent_l2(res.styles, s0)).cpu();
  torch::Tensor ident;
  if (id_loss) ident = id_loss->similarity(res.images_after).cpu();
  for (int64_t i = 0; i < n; ++i) {
    auto& row = res.rows[static_cast<size_t>(i)];
    if (row.ok) row.steps_done = step;
    row.clip_before = before[i].item<double>();
    row.clip_after = after[i].item<double>();
    row.loss_clip = 1.0 - row.clip_after;
    row.loss_l2 = l2[i].item<double>();
    if (ident.defined()) {
      row.identity = ident[i].item<double>();
      row.loss_id = 1.0 - *row.identity;
    }
    row.loss =
        row.loss_clip + (o.free_mode ? 0.0 : o.l2_lambda * row.loss_l2) + o.id_lambda * row.loss_id;
  }
  res.seconds = loop_seconds;
  res.steps_per_second = step > 0 ? double(step) / loop_seconds : 0.0;
  return res;
}

}  // namespace styleclip
