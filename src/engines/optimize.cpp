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

// run_optimization.py `get_lr` (docs/algorithms.md §1.5).
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

/// One optimisation run: the state every step updates in place, and the steps. Every piece of
/// per-step state lives on the device: the loop feeds a GPU without waiting (one small host check
/// every kSyncEvery steps: are all rows dead?), and with `cuda_graph` one captured step replays
/// against the same tensors.
class OptimizeRun {
 public:
  /// From W+ `ws0`, or (S space only) from the style codes `s_start` when `ws0` is undefined.
  OptimizeRun(const Generator& gen, const IdentityModel* identity, const torch::Tensor& ws0,
              const std::vector<torch::Tensor>& s_start, const torch::Tensor& text,
              const Clip& clip, const OptimizeOptions& o, const OptimizeCallbacks& callbacks)
      : gen_(gen),
        o_(o),
        cb_(callbacks),
        dev_(gen.device()),
        w0_(ws0.defined() ? ws0.to(dev_).detach().contiguous() : ws0),
        n_(ws0.defined() ? ws0.size(0) : s_start.front().size(0)),
        s_start_(s_start),
        text_(text.to(dev_).detach()),
        clip_loss_(clip, gen.info().resolution, o.clip_input),
        w_space_(o.space == LatentSpace::kWPlus),
        adam_(start(identity)) {
    const auto on_dev = torch::TensorOptions().device(dev_);
    active_ = torch::ones({n_}, on_dev.dtype(torch::kBool));
    failed_at_ = torch::full({n_}, -1, on_dev.dtype(torch::kInt64));
    step_t_ = torch::zeros({}, on_dev.dtype(torch::kInt64));  // the step being taken
    loss_out_ = torch::zeros({}, on_dev.dtype(torch::kFloat32));
    want_frames_ = cb_.frame && o_.frame_every > 0;
    if (want_frames_) frame_out_ = torch::empty_like(res_.images_before);
    // `good_`: per row, the latest parameters whose loss was finite. A row that fails is put
    // back to them after every step (after backward: a leaf in the graph must not change before).
    for (const auto& p : params_) {
      good_.push_back(p.detach().clone());
      pre_.push_back(torch::empty_like(p));
    }
    res_.rows.resize(static_cast<size_t>(n_));
  }

  OptimizeResult run();

 private:
  std::vector<torch::Tensor> start(const IdentityModel* identity);
  torch::Tensor total_loss(const torch::Tensor& img);
  void one_step();
  void loop();
  void finish(double loop_seconds);
#if defined(STYLECLIP_WITH_CUDA)
  void capture();
#endif

  static constexpr int kSyncEvery = 10;
  const Generator& gen_;
  const OptimizeOptions& o_;
  const OptimizeCallbacks& cb_;
  torch::Device dev_;
  torch::Tensor w0_;
  int64_t n_;
  const std::vector<torch::Tensor>& s_start_;
  torch::Tensor text_;
  ClipLoss clip_loss_;
  bool w_space_;
  OptimizeResult res_;
  std::vector<torch::Tensor> s0_;
  std::optional<IdentityLoss> id_loss_;
  torch::Tensor w_;                    // W+ being optimised (W+ space)
  std::vector<torch::Tensor> s_;       // every style layer (S space)
  std::vector<torch::Tensor> params_;  // what Adam moves
  DeviceAdam adam_;
  torch::Tensor active_, failed_at_, step_t_, loss_out_, frame_out_;
  bool want_frames_ = false;
  std::vector<torch::Tensor> good_, pre_;
  int step_ = 0;
#if defined(STYLECLIP_WITH_CUDA)
  static constexpr int kWarmupSteps = 3;
  std::optional<c10::cuda::CUDAStreamGuard> side_stream_;
  std::optional<at::cuda::CUDAGraph> graph_;
  std::optional<JitOptimizationOff> jit_off_;
#endif
};

/// The start images and the optimised tensors: W+, or the non-toRGB style layers (the
/// reference's STYLESPACE_INDICES_WITHOUT_TORGB); toRGB styles, and StyleGAN3's input transform
/// (it turns and shifts the picture: not an attribute), stay fixed. Returns them for Adam.
std::vector<torch::Tensor> OptimizeRun::start(const IdentityModel* identity) {
  {
    torch::NoGradGuard no_grad;
    if (w0_.defined()) {
      s0_ = gen_.styles(w0_);
    } else {
      for (const auto& t : s_start_) s0_.push_back(t.to(dev_).detach().contiguous());
    }
    res_.images_before = gen_.synthesis_from_styles(s0_);
  }
  if (identity != nullptr) id_loss_.emplace(*identity, res_.images_before);
  if (w_space_) {
    w_ = w0_.clone().requires_grad_(true);
    params_ = {w_};
    if (gen_.info().family == GeneratorFamily::kStyleGAN3) {
      // Row 0 drives StyleGAN3's input transform, which turns and shifts the picture: not an
      // attribute to edit. Its gradient is zeroed, so Adam (zero moments) never moves it.
      w_.register_hook([](torch::Tensor g) {
        g = g.clone();
        g.select(1, 0).zero_();
        return g;
      });
    }
  } else {
    for (size_t l = 0; l < s0_.size(); ++l) {
      s_.push_back(s0_[l].clone());
      if (gen_.info().style_is_channel(l)) {
        s_.back().requires_grad_(true);
        params_.push_back(s_.back());
      }
    }
  }
  return params_;
}

torch::Tensor OptimizeRun::total_loss(const torch::Tensor& img) {
  auto total = clip_loss_(img, text_);
  if (!o_.free_mode && o_.l2_lambda > 0) {
    total = total + o_.l2_lambda * (w_space_ ? latent_l2(w_, w0_) : latent_l2(s_, s0_));
  }
  if (o_.id_lambda > 0) total = total + o_.id_lambda * (*id_loss_)(img);
  return total;
}

/// One step, at the learning rate set beforehand: no host values, no host reads.
void OptimizeRun::one_step() {
  adam_.zero_grad();
  const auto img = w_space_ ? gen_.synthesis(w_) : gen_.synthesis_from_styles(s_);
  const auto total = total_loss(img);
  const auto finite = torch::isfinite(total.detach());
  failed_at_.copy_(torch::where(active_.logical_and(finite.logical_not()), step_t_, failed_at_));
  active_.logical_and_(finite);
  if (want_frames_) frame_out_.copy_(img.detach());
  for (size_t p = 0; p < params_.size(); ++p) pre_[p].copy_(params_[p].detach());
  const auto loss = torch::where(active_, total, torch::zeros_like(total)).sum();
  loss.backward();
  adam_.step();
  // Failed rows go back to their last finite values (a no-op for the others); finite rows
  // remember this step's values. Both on the device, every step, without asking which.
  const auto failed = active_.logical_not();
  for (size_t p = 0; p < params_.size(); ++p) {
    restore_rows(params_[p], good_[p], failed);
    restore_rows(good_[p], pre_[p], active_);
  }
  loss_out_.copy_(loss.detach());
  step_t_.add_(1);
}

#if defined(STYLECLIP_WITH_CUDA)
// CUDA graphs (optional): a few eager steps on a side stream warm up everything that happens
// once (cuDNN's choices, library handles, the allocator), then one step is captured and every
// later step is one replay: a single launch instead of thousands of kernel launches. PyTorch's
// "whole network capture" recipe (torch.cuda.graphs docs). The first replay-time step is
// captured (capturing records the step without running it).
void OptimizeRun::capture() {
  // The eager steps' cached blocks go back to the driver first, so that the graph's own memory
  // pool does not come on top of them (a card's memory is the limit at batch 1).
  synchronize_device(dev_);
  c10::cuda::CUDACachingAllocator::emptyCache();
  graph_.emplace();
  try {
    graph_->capture_begin();
    one_step();
    graph_->capture_end();
  } catch (const std::exception& e) {
    // End the capture whatever failed, or the stream stays in capture mode (Python's
    // torch.cuda.graph does the same on its way out).
    try {
      graph_->capture_end();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the first error counts
    }
    graph_.reset();
    const auto m = torch_message(e);
    if (is_out_of_memory(m)) throw;  // the caller's advice (a smaller --batch) fits better
    throw device_error("CUDA graph capture of the optimisation step failed (" + m +
                       "): run without --cuda-graph");
  }
}
#endif

void OptimizeRun::loop() {
  while (step_ < o_.steps) {
    if (cb_.should_stop && cb_.should_stop()) {
      res_.stopped = true;
      break;
    }
    adam_.set_lr(optimize_lr(step_, o_.steps, o_.lr));
#if defined(STYLECLIP_WITH_CUDA)
    if (o_.cuda_graph && step_ >= kWarmupSteps) {
      if (!graph_) capture();
      graph_->replay();
    } else {
      one_step();
    }
#else
    one_step();
#endif
    if (want_frames_ && step_ % o_.frame_every == 0) cb_.frame(step_, frame_out_);
    ++step_;
    if (cb_.progress) {
      // One read for both numbers: a single wait for the device.
      const auto now =
          torch::stack({active_.sum().to(torch::kFloat64), loss_out_.to(torch::kFloat64)}).cpu();
      const auto alive = now[0].item<double>();
      cb_.progress(step_, o_.steps, alive > 0 ? now[1].item<double>() / alive : 0.0);
    }
    if ((step_ % kSyncEvery == 1 || step_ == o_.steps) && !active_.any().item<bool>()) break;
  }
}

OptimizeResult OptimizeRun::run() {
#if defined(STYLECLIP_WITH_CUDA)
  // The state above was made on the ambient stream: finish that before the side stream reads
  // it; the loop ends with a device synchronisation before either goes away (below).
  if (o_.cuda_graph) {
    synchronize_device(dev_);
    side_stream_.emplace(c10::cuda::getStreamFromPool(false, dev_.index()));
    jit_off_.emplace();
  }
#endif
  const auto t0 = std::chrono::steady_clock::now();
#if defined(STYLECLIP_WITH_CUDA)
  try {
    loop();
  } catch (const std::exception&) {
    // A replay may still be running on the side stream: let it finish before the graph's pool
    // and the step's state are freed on the way out.
    try {
      synchronize_device(dev_);
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the first error counts
    }
    throw;
  }
#else
  loop();
#endif
  synchronize_device(dev_);
  const double loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#if defined(STYLECLIP_WITH_CUDA)
  graph_.reset();  // its memory pool: nothing below uses what the captured step allocated
  side_stream_.reset();
  jit_off_.reset();
#endif
  finish(loop_seconds);
  return std::move(res_);
}

/// Failed rows back to their last finite values, then the final metrics from the final latent
/// (the image and the saved latent agree; the reference keeps the image from before its last
/// step).
void OptimizeRun::finish(double loop_seconds) {
  const auto failed = active_.logical_not();
  for (size_t p = 0; p < params_.size(); ++p) restore_rows(params_[p], good_[p], failed);
  const auto failed_steps = failed_at_.cpu();
  for (int64_t i = 0; i < n_; ++i) {
    const auto at_step = failed_steps[i].item<int64_t>();
    if (at_step < 0) continue;
    auto& row = res_.rows[static_cast<size_t>(i)];
    row.ok = false;
    row.steps_done = static_cast<int>(at_step);
    row.error = "loss became NaN or Inf at step " + std::to_string(at_step) +
                " (try a smaller --lr); kept its last finite latent";
  }
  torch::NoGradGuard no_grad;
  if (w_space_) {
    res_.ws = w_.detach();
    res_.styles = gen_.styles(res_.ws);
  } else {
    res_.ws = w0_;
    for (const auto& t : s_) res_.styles.push_back(t.detach());
  }
  res_.images_after = gen_.synthesis_from_styles(res_.styles);
  const auto before = clip_loss_.similarity(res_.images_before, text_).cpu();
  const auto after = clip_loss_.similarity(res_.images_after, text_).cpu();
  const auto l2 = (w_space_ ? latent_l2(res_.ws, w0_) : latent_l2(res_.styles, s0_)).cpu();
  torch::Tensor ident;
  if (id_loss_) ident = id_loss_->similarity(res_.images_after).cpu();
  for (int64_t i = 0; i < n_; ++i) {
    auto& row = res_.rows[static_cast<size_t>(i)];
    if (row.ok) row.steps_done = step_;
    row.clip_before = before[i].item<double>();
    row.clip_after = after[i].item<double>();
    row.loss_clip = 1.0 - row.clip_after;
    row.loss_l2 = l2[i].item<double>();
    if (ident.defined()) {
      row.identity = ident[i].item<double>();
      row.loss_id = 1.0 - *row.identity;
    }
    row.loss = row.loss_clip + (o_.free_mode ? 0.0 : o_.l2_lambda * row.loss_l2) +
               o_.id_lambda * row.loss_id;
  }
  res_.seconds = loop_seconds;
  res_.steps_per_second = step_ > 0 ? double(step_) / loop_seconds : 0.0;
}

}  // namespace

OptimizeResult optimize(const Generator& gen, const Clip& clip, const IdentityModel* identity,
                        const torch::Tensor& ws0, const torch::Tensor& text,
                        const OptimizeOptions& o, const OptimizeCallbacks& callbacks) {
  validate(o, identity != nullptr);
  gen.check_wplus(ws0, "start latent");
  check_cuda_graph(o, gen.device());
  // Every forward pass below, the final metrics included, at the chosen precision.
  const PrecisionScope precision(o.precision, gen.device());
  OptimizeRun run(gen, identity, ws0, {}, text, clip, o, callbacks);
  return run.run();
}

OptimizeResult optimize_styles(const Generator& gen, const Clip& clip,
                               const IdentityModel* identity, const std::vector<torch::Tensor>& s0,
                               const torch::Tensor& text, const OptimizeOptions& o,
                               const OptimizeCallbacks& callbacks) {
  validate(o, identity != nullptr);
  if (o.space != LatentSpace::kS) {
    throw usage_error("a style-space start (.styles.pt) is optimised in S: use --space S");
  }
  gen.check_styles(s0, "start styles");
  check_cuda_graph(o, gen.device());
  const PrecisionScope precision(o.precision, gen.device());
  OptimizeRun run(gen, identity, torch::Tensor(), s0, text, clip, o, callbacks);
  return run.run();
}

}  // namespace styleclip
