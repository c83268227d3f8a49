// Mapper training with checkpoints and resume (mapper_train.h). The loop is the reference's
// (`mapper/coach.py`, docs/algorithms.md §2.3); the bookkeeping around it is this tool's.
#include <styleclip/workflows/mapper_train.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/losses/losses.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/latents.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// The training rows for a step: a fixed permutation per epoch from (seed, epoch), so a resumed
/// run draws exactly the batches an uninterrupted one would.
torch::Tensor batch_indices(int64_t step, int64_t batch, int64_t n, uint64_t seed) {
  std::vector<int64_t> out;
  for (int64_t j = 0; j < batch; ++j) {
    const int64_t pos = step * batch + j;
    const int64_t epoch = pos / n;
    auto rng = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + uint64_t(epoch));
    const auto perm = torch::randperm(n, rng, torch::TensorOptions().dtype(torch::kInt64));
    out.push_back(perm[pos % n].item<int64_t>());
  }
  return torch::tensor(out, torch::kInt64);
}

class MapperTrainer {
 public:
  explicit MapperTrainer(const MapperTrainRun& run)
      : run_(run),
        bundle_(Bundle::open(run.models)),
        info_(bundle_.generator()),
        ckpt_(run.out.string() + ".ckpt") {}

  MapperTrainReport go() {
    setup();
    return train();
  }

 private:
  void setup();
  void start_or_resume();
  MapperTrainReport train();
  void save_checkpoint();
  double val_clip();
  void write_samples();

  const MapperTrainRun& run_;
  Bundle bundle_;
  const GeneratorInfo& info_;
  fs::path ckpt_;
  torch::Device device_ = torch::kCPU;
  MapperTrainOptions t_;
  std::optional<Generator> gen_;
  std::optional<Clip> clip_;
  std::optional<IdentityModel> identity_;
  std::optional<ClipLoss> clip_loss_;
  LevelsMapper mapper_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> opt_;
  torch::Tensor train_, val_, text_;
  json run_record_, history_ = json::array();
  int64_t step_ = 0;
  double interval_loss_ = 0;  // training loss summed since the last history entry
  int64_t interval_n_ = 0;
};

void MapperTrainer::setup() {
  if (run_.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw usage_error(
        "--text is empty: give the prompt the mapper learns, e.g. --text \"purple hair\"");
  }
  if (run_.latents.empty() == (run_.sample <= 0)) {
    throw usage_error(
        "give exactly one of --latents FILE|FOLDER... (e.g. e4e inversions) or --sample N");
  }
  if (run_.steps < 1) throw usage_error("invalid --steps: must be at least 1");
  device_ = parse_device(run_.device);
  t_ = run_.train;
  t_.precision = parse_precision(run_.precision, device_);
  const auto class_index =
      check_class(run_.class_index, info_, run_.models, run_.sample > 0, "--sample");
  torch::Tensor data;
  json sources;
  if (!run_.latents.empty()) {
    auto g = gather_latents(run_.latents, /*recursive=*/false, {}, info_);
    if (!g.failed.empty()) {  // a training set is all of what was asked for, or nothing
      throw input_error(g.failed[0]["error"].get<std::string>() +
                        " (fix or leave out that file from --latents)");
    }
    data = g.ws;
    sources = std::move(g.sources);
  }
  gen_.emplace(bundle_, device_);
  clip_.emplace(bundle_, device_);
  if (bundle_.has("identity")) identity_.emplace(bundle_, device_);
  t_.id_lambda = run_.id_lambda.value_or(identity_ ? 0.1 : 0.0);
  validate(t_, identity_.has_value());
  if (!data.defined()) {
    torch::NoGradGuard no_grad;
    auto rng = at::make_generator<at::CPUGeneratorImpl>(t_.seed);
    const auto z = torch::randn({run_.sample, info_.z_dim}, rng);
    const auto c = gen_->class_label(class_index, run_.sample);
    data = gen_->broadcast(gen_->truncate(gen_->mapping(z, c), run_.truncation)).cpu();
  }
  // Held out: the last tenth (at least one row) when there are two rows or more.
  const int64_t n_all = data.size(0);
  const int64_t n_val = n_all >= 2 ? std::max<int64_t>(1, n_all / 10) : 0;
  train_ = data.slice(0, 0, n_all - n_val).to(device_);
  val_ = n_val > 0 ? data.slice(0, n_all - n_val).to(device_) : train_.slice(0, 0, 1);

  LevelsMapperOptions mo;
  mo.num_ws = info_.num_ws;
  mo.generator_family = to_string(info_.family);
  mo.w_dim = info_.w_dim;
  mo.groups = t_.groups;
  mo.pixel_norm = run_.pixel_norm;
  mo.seed = t_.seed;
  mapper_ = LevelsMapper(mo);
  mapper_->to(device_);
  ensure_output_dir(run_.out.parent_path().empty() ? fs::path(".") : run_.out.parent_path());
  json source = run_.latents.empty()
                    ? json{{"sample", run_.sample}, {"truncation", run_.truncation}}
                    : json{{"latents", sources}};
  if (class_index) source["class"] = *class_index;
  run_record_ = {{"text", run_.text},
                 {"options", t_.to_json()},
                 {"mapper", mo.to_json()},
                 {"data", source},
                 {"steps", run_.steps}};
  start_or_resume();
  {
    torch::NoGradGuard no_grad;
    text_ = clip_->encode_text({run_.text});
  }
  clip_loss_.emplace(*clip_, info_.resolution, ClipInput::kRaw);
  if (history_.empty()) history_.push_back({{"step", 0}, {"val_clip_loss", val_clip()}});
}

void MapperTrainer::start_or_resume() {
  std::error_code ec;
  if (!run_.resume || !fs::exists(ckpt_ / "state.json", ec)) {
    if (run_.resume)
      spdlog::warn("--resume: no checkpoint at '{}', starting from step 0", ckpt_.string());
    opt_ = make_mapper_optimizer(mapper_, t_);
    return;
  }
  std::ifstream in(ckpt_ / "state.json");
  const json state = json::parse(in);
  if (state.at("run") != run_record_) {
    throw usage_error(
        "--resume: the checkpoint '" + ckpt_.string() +
        "' belongs to a run with other options; rerun without --resume to start again");
  }
  mapper_ =
      load_mapper(ckpt_ / "mapper.pt", info_.num_ws, info_.w_dim, device_, to_string(info_.family))
          .mapper;
  opt_ = make_mapper_optimizer(mapper_, t_);
  load_optimizer_state(ckpt_ / "optimizer.pt", *opt_);
  step_ = state.at("step").get<int64_t>();
  history_ = state.at("history");
  interval_loss_ = state.at("interval_loss").get<double>();
  interval_n_ = state.at("interval_n").get<int64_t>();
  spdlog::info("resuming at step {} of {}", step_, run_.steps);
}

void MapperTrainer::save_checkpoint() {
  ensure_output_dir(ckpt_);
  save_mapper(ckpt_ / "mapper.pt", mapper_, json{{"checkpoint_step", step_}}, t_.strength);
  save_optimizer_state(ckpt_ / "optimizer.pt", *opt_);
  write_json(ckpt_ / "state.json", json{{"run", run_record_},
                                        {"step", step_},
                                        {"history", history_},
                                        {"interval_loss", interval_loss_},
                                        {"interval_n", interval_n_}});
}

double MapperTrainer::val_clip() {
  torch::NoGradGuard no_grad;
  mapper_->eval();
  const auto images = gen_->synthesis(mapper_->apply(val_, t_.strength));
  const double v = (*clip_loss_)(images, text_).mean().item<double>();
  mapper_->train();
  return v;
}

/// Held-out samples, before | after, so progress can be seen as well as read.
void MapperTrainer::write_samples() {
  torch::NoGradGuard no_grad;
  mapper_->eval();
  const auto v = val_.slice(0, 0, std::min<int64_t>(4, val_.size(0)));
  const auto before = gen_->synthesis(v);
  const auto after = gen_->synthesis(mapper_->apply(v, t_.strength));
  mapper_->train();
  std::vector<torch::Tensor> row;
  for (int64_t k = 0; k < v.size(0); ++k) {
    row.push_back(before[k]);
    row.push_back(after[k]);
  }
  const fs::path dir = run_.out.string() + ".samples";
  ensure_output_dir(dir);
  char name[32];
  std::snprintf(name, sizeof name, "step%07lld.png", static_cast<long long>(step_));
  write_image_row(dir / name, row);
}

MapperTrainReport MapperTrainer::train() {
  const InterruptGuard interrupt_guard;
  Progress progress("mapper '" + run_.text + "'", static_cast<int>(run_.steps));
  MapperTrainReport report;
  report.checkpoint = ckpt_;
  int64_t run_steps = 0;
  mapper_->train();
  while (step_ < run_.steps) {
    const auto idx = batch_indices(step_, t_.batch, train_.size(0), t_.seed).to(device_);
    const auto losses =
        mapper_train_step(mapper_, *opt_, *gen_, *clip_loss_, identity_ ? &*identity_ : nullptr,
                          text_, train_.index_select(0, idx), t_);
    if (!std::isfinite(losses.loss)) {
      save_checkpoint();
      throw input_error("training loss became NaN or Inf at step " + std::to_string(step_) +
                        " (try a smaller --lr); the last checkpoint is in '" + ckpt_.string() +
                        "'");
    }
    ++step_;
    ++run_steps;
    interval_loss_ += losses.loss;
    ++interval_n_;
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f (clip %.4f)", losses.loss, losses.clip);
    progress.update(static_cast<int>(step_), buf);
    if (step_ % run_.val_every == 0 || step_ == run_.steps) {
      history_.push_back({{"step", step_},
                          {"train_loss", interval_loss_ / double(interval_n_)},
                          {"val_clip_loss", val_clip()}});
      interval_loss_ = 0;
      interval_n_ = 0;
    }
    const bool budget_spent = run_.max_steps > 0 && run_steps >= run_.max_steps;
    if (InterruptGuard::interrupted() || (budget_spent && step_ < run_.steps)) {
      save_checkpoint();
      progress.finish();
      spdlog::warn("stopped at step {} of {}: checkpoint in '{}', continue with --resume", step_,
                   run_.steps, ckpt_.string());
      report.exit_code = static_cast<int>(ExitCode::kInterrupted);
      report.history = history_;
      report.step = step_;
      return report;
    }
    if (run_.image_every > 0 && (step_ % run_.image_every == 0 || step_ == run_.steps))
      write_samples();
    if (step_ % run_.ckpt_every == 0 && step_ < run_.steps) save_checkpoint();
  }
  progress.finish();
  const json meta = {{"prompt", run_.text},
                     {"generator_sha256", bundle_.sha256("generator")},
                     {"run", run_record_},
                     {"history", history_},
                     {"steps", step_}};
  save_mapper(run_.out, mapper_, meta, t_.strength);
  std::error_code ec;
  fs::remove_all(ckpt_, ec);
  spdlog::info("held-out CLIP loss {:.4f} -> {:.4f}",
               history_.front()["val_clip_loss"].get<double>(),
               history_.back()["val_clip_loss"].get<double>());
  report.history = history_;
  report.step = step_;
  return report;
}

}  // namespace

MapperTrainReport train_mapper(const MapperTrainRun& run) { return MapperTrainer(run).go(); }

}  // namespace styleclip
