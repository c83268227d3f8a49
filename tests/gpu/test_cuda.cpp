// CUDA (label `gpu`): every engine on the GPU gives what it gives on the CPU, the
// lower precisions stay within their tolerances, and peak GPU memory is readable. Skips where
// LibTorch sees no CUDA device (every CI run); scripts/gpu_check.sh runs it on a GPU machine.
// The bundle: $STYLECLIP_GPU_TEST_BUNDLE (gpu_check.sh makes one), else the tests' tiny bundle.
#include <styleclip/engines/global_directions.h>
#include <styleclip/engines/mapper.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/bundle.h>
#include <styleclip/runtime.h>

#include <cmath>
#include <cstdlib>

#include <torch/cuda.h>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;

// CPU and GPU kernels sum in different orders: fp32 agreement after a few Adam steps is a few
// 1e-4 on a cosine similarity (TF32 is off in fp32 scopes). bf16/fp16: as on the CPU (see
// unit/test_precision.cpp), ten times the unit roundoff of bf16 on a quantity in [-1, 1].
constexpr double kFp32Tolerance = 2e-3;
constexpr double kLowTolerance = 0.02;

fs::path bundle_path() {
  const char* env = std::getenv("STYLECLIP_GPU_TEST_BUNDLE");
  return env != nullptr && *env != '\0' ? fs::path(env) : test::testdata("tiny");
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
    const auto path = bundle_path();
    if (!fs::exists(path / "manifest.json")) GTEST_SKIP() << "no bundle at " << path;
    const auto bundle = Bundle::open(path);
    if (!bundle.has("clip")) GTEST_SKIP() << "bundle " << path << " has no CLIP model";
    cpu_gen_ = std::make_unique<Generator>(bundle, torch::kCPU);
    cpu_clip_ = std::make_unique<Clip>(bundle, torch::kCPU);
    gen_ = std::make_unique<Generator>(bundle, cuda_);
    clip_ = std::make_unique<Clip>(bundle, cuda_);
  }
  [[nodiscard]] torch::Tensor start(std::initializer_list<uint64_t> seeds) const {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> rows;
    for (const auto s : seeds) {
      rows.push_back(cpu_gen_->broadcast(
          cpu_gen_->truncate(cpu_gen_->mapping(cpu_gen_->seed_z(s).unsqueeze(0)), 0.7)));
    }
    return torch::cat(rows, 0);
  }
  [[nodiscard]] torch::Tensor text(const Clip& clip, const std::string& t) const {
    torch::NoGradGuard no_grad;
    return clip.encode_text({t});
  }
  torch::Device cuda_{torch::kCUDA, 0};
  std::unique_ptr<Generator> cpu_gen_, gen_;
  std::unique_ptr<Clip> cpu_clip_, clip_;
};

TEST_F(CudaTest, ModelsAndTensorsLiveOnTheDevice) {
  const auto ws = start({0});
  torch::NoGradGuard no_grad;
  // fp32 scope: without it cuDNN's convolutions use TF32 by default (PyTorch's default), which
  // moved this image by 4.3e-3 on an H200 (2026-11-28), beyond the fp32 tolerance below.
  const PrecisionScope fp32(Precision::kFp32, cuda_);
  const auto img = gen_->synthesis(ws);
  EXPECT_TRUE(img.is_cuda());
  EXPECT_TRUE(gen_->w_avg().is_cuda());
  EXPECT_TRUE(clip_->encode_text({"a red car"}).is_cuda());
  EXPECT_TRUE(test::tensors_close(img.cpu(), cpu_gen_->synthesis(ws), 1e-3));
}

TEST_F(CudaTest, OptimizeMatchesTheCpuInFp32AndTracksItInBf16AndFp16) {
  const auto ws = start({1, 2});
  OptimizeOptions o;
  o.steps = 10;
  const auto ref = optimize(*cpu_gen_, *cpu_clip_, nullptr, ws, text(*cpu_clip_, "a red car"), o);
  for (const auto p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16}) {
    o.precision = p;
    const auto res = optimize(*gen_, *clip_, nullptr, ws, text(*clip_, "a red car"), o);
    EXPECT_TRUE(res.ws.is_cuda());
    EXPECT_EQ(res.ws.scalar_type(), torch::kFloat32);
    const double tol = p == Precision::kFp32 ? kFp32Tolerance : kLowTolerance;
    for (size_t i = 0; i < ref.rows.size(); ++i) {
      EXPECT_TRUE(res.rows[i].ok) << to_string(p);
      EXPECT_NEAR(res.rows[i].clip_after, ref.rows[i].clip_after, tol) << to_string(p);
    }
  }
}

// --cuda-graph: 3 eager warm-up steps, then one captured step replayed. In fp32 the replays run
// the kernels the eager steps run, so the two agree to float rounding (which Adam amplifies to
// ~1e-3 on a latent after 20 steps, see unit/test_optimize.cpp; the similarity moves far less);
// a replay that repeated step 3's learning rate or bias corrections, or stale inputs, would be
// off by O(lr). Also: bf16 under a graph, a NaN row stopping alone, progress and frames.
TEST_F(CudaTest, CudaGraphStepsEqualEagerSteps) {
  if (!cuda_graphs_built()) GTEST_SKIP() << "built without c10_cuda: no CUDA graph support";
  const auto ws = start({5, 6});
  const auto t = text(*clip_, "a red car");
  OptimizeOptions o;
  o.steps = 12;
  o.frame_every = 4;
  const auto eager = optimize(*gen_, *clip_, nullptr, ws, t, o);
  o.cuda_graph = true;
  int progress_calls = 0, frames = 0;
  OptimizeCallbacks cb;
  cb.progress = [&](int done, int total, double loss) {
    ++progress_calls;
    EXPECT_EQ(done, progress_calls);
    EXPECT_EQ(total, 12);
    EXPECT_TRUE(std::isfinite(loss));
  };
  cb.frame = [&](int step, const torch::Tensor& img) {
    EXPECT_EQ(step, 4 * frames++);
    EXPECT_TRUE(img.isfinite().all().item<bool>());
  };
  const auto graphed = optimize(*gen_, *clip_, nullptr, ws, t, o, cb);
  EXPECT_EQ(progress_calls, 12);
  EXPECT_EQ(frames, 3);
  for (size_t i = 0; i < eager.rows.size(); ++i) {
    EXPECT_NEAR(graphed.rows[i].clip_after, eager.rows[i].clip_after, 1e-4) << i;
    EXPECT_GT(graphed.rows[i].clip_after, graphed.rows[i].clip_before) << i;
  }
  EXPECT_TRUE(test::tensors_close(graphed.ws.cpu(), eager.ws.cpu(), 1e-2));

  o.precision = Precision::kBf16;
  auto bad = ws.clone();
  bad[1].fill_(1e30F);  // this row's loss is NaN from the start
  const auto bf16 = optimize(*gen_, *clip_, nullptr, bad, t, o);
  EXPECT_TRUE(bf16.rows[0].ok);
  EXPECT_NEAR(bf16.rows[0].clip_after, eager.rows[0].clip_after, kLowTolerance);
  EXPECT_FALSE(bf16.rows[1].ok);
  EXPECT_TRUE(torch::equal(bf16.ws[1].cpu(), bad[1]));
}

TEST_F(CudaTest, MapperStepMatchesTheCpu) {
  const auto w = start({3, 4});
  MapperTrainOptions o;
  o.id_lambda = 0;
  LevelsMapperOptions mo;
  mo.num_ws = gen_->info().num_ws;
  mo.w_dim = gen_->info().w_dim;
  LevelsMapper cpu_mapper(mo), mapper(mo);
  mapper->to(cuda_);
  auto cpu_opt = make_mapper_optimizer(cpu_mapper, o);
  auto opt = make_mapper_optimizer(mapper, o);
  const ClipLoss cpu_loss(*cpu_clip_, gen_->info().resolution, ClipInput::kRaw);
  const ClipLoss loss(*clip_, gen_->info().resolution, ClipInput::kRaw);
  for (int step = 0; step < 3; ++step) {
    const auto a = mapper_train_step(cpu_mapper, *cpu_opt, *cpu_gen_, cpu_loss, nullptr,
                                     text(*cpu_clip_, "a red car"), w, o);
    const auto b =
        mapper_train_step(mapper, *opt, *gen_, loss, nullptr, text(*clip_, "a red car"), w, o);
    EXPECT_NEAR(b.clip, a.clip, kFp32Tolerance) << step;
    EXPECT_NEAR(b.l2, a.l2, 1e-4 + 1e-3 * a.l2) << step;
  }
}

TEST_F(CudaTest, GlobalDirectionsMatchTheCpu) {
  PrepareOptions p;
  p.samples = 200;
  p.images = 3;
  p.batch = 64;
  const auto cpu_stats = style_statistics(*cpu_gen_, p);
  const auto stats = style_statistics(*gen_, p);
  for (size_t l = 0; l < stats.mean.size(); ++l) {
    EXPECT_TRUE(test::tensors_close(stats.mean[l].cpu(), cpu_stats.mean[l], 1e-4)) << l;
  }
  const int64_t layer = default_global_layers(gen_->info()).front();
  const auto a = channel_directions(*cpu_gen_, *cpu_clip_, cpu_stats, layer, 0, 4, p);
  const auto b = channel_directions(*gen_, *clip_, stats, layer, 0, 4, p);
  EXPECT_TRUE(b.is_cuda());
  // The 8-bit rounding step of the reference (docs/algorithms.md §3.3) turns 1e-6 differences into
  // whole levels at a few pixels; a direction moves by O(1e-3) then, a wrong one by O(1).
  EXPECT_TRUE(test::tensors_close(b.cpu(), a, 2e-2));
}

TEST_F(CudaTest, PeakMemoryIsReadable) {
  if (!have_cuda_memory_stats()) GTEST_SKIP() << "built without CUDA memory statistics";
  reset_peak_device_memory(cuda_);
  {
    const auto big =
        torch::empty({64 << 20}, torch::TensorOptions().dtype(torch::kUInt8).device(cuda_));
    EXPECT_GE(peak_device_memory(cuda_), int64_t{64} << 20);
  }
  EXPECT_EQ(peak_device_memory(torch::kCPU), -1);
}

}  // namespace
}  // namespace styleclip
