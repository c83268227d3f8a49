// `styleclip mapper train` — train a latent mapper for one prompt (StyleCLIP §2, algorithms §2.3).
// Checkpoints every --ckpt-every steps into <out>.ckpt/ (mapper, optimiser state, progress) so
// --resume continues at the same step with the same optimiser state and batch order; Ctrl-C
// saves a checkpoint and exits with code 130.
#include <styleclip/engines/mapper.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted = true; }

struct MapperCliOptions {
  std::string models;
  std::string text;
  std::string latents;
  int64_t sample = 0;
  double truncation = 0.7;
  std::optional<int64_t> class_index;
  std::string out;
  int64_t steps = 50000;
  int64_t batch = 2;
  std::string optimizer = "ranger";
  double lr = 0.5;
  double clip_lambda = 1.0;
  double l2_lambda = 0.8;
  std::optional<double> id_lambda;
  double strength = 0.1;
  bool no_coarse = false, no_medium = false, no_fine = false;
  std::string pixelnorm = "rows";
  int64_t val_every = 100;
  int64_t ckpt_every = 500;
  int64_t image_every = 0;
  int64_t max_steps = 0;
  bool resume = false;
  uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "auto";
};

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

int run_mapper_train(const MapperCliOptions& o) {
  if (o.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw usage_error(
        "--text is empty: give the prompt the mapper learns, e.g. --text \"purple hair\"");
  }
  if (o.latents.empty() == (o.sample <= 0)) {
    throw usage_error("give exactly one of --latents FILE (e.g. e4e inversions) or --sample N");
  }
  if (o.steps < 1) throw usage_error("invalid --steps: must be at least 1");
  if (o.pixelnorm != "rows" && o.pixelnorm != "features") {
    throw usage_error("invalid --pixelnorm '" + o.pixelnorm + "': expected rows or features");
  }
  const auto device = parse_device(o.device);
  const auto precision = parse_precision(o.precision, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const auto& info = bundle.generator();
  const auto class_index = check_class(o.class_index, info, models, o.sample > 0, "--sample");
  torch::Tensor data;
  if (!o.latents.empty()) data = load_latents(o.latents, info.num_ws, info.w_dim);

  MapperTrainOptions t;
  t.clip_lambda = o.clip_lambda;
  t.l2_lambda = o.l2_lambda;
  t.lr = o.lr;
  t.strength = o.strength;
  t.groups.coarse = !o.no_coarse;
  t.groups.medium = !o.no_medium;
  t.groups.fine = !o.no_fine;
  t.optimizer = o.optimizer;
  t.batch = o.batch;
  t.seed = o.seed;
  t.precision = precision;
  const Generator gen(bundle, device);
  const Clip clip(bundle, device);
  std::optional<IdentityModel> identity;
  if (bundle.has("identity")) identity.emplace(bundle, device);
  t.id_lambda = o.id_lambda.value_or(identity ? 0.1 : 0.0);
  validate(t, identity.has_value());
  if (data.defined() == false) {
    torch::NoGradGuard no_grad;
    auto rng = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const auto z = torch::randn({o.sample, info.z_dim}, rng);
    data = gen.broadcast(gen.truncate(gen.mapping(z, gen.class_label(class_index, o.sample)),
                                      o.truncation))
               .cpu();
  }
  // Held out: the last tenth (at least one row) when there are two rows or more.
  const int64_t n_all = data.size(0);
  const int64_t n_val = n_all >= 2 ? std::max<int64_t>(1, n_all / 10) : 0;
  const auto train = data.slice(0, 0, n_all - n_val).to(device);
  const auto val = n_val > 0 ? data.slice(0, n_all - n_val).to(device) : train.slice(0, 0, 1);

  LevelsMapperOptions mo;
  mo.num_ws = info.num_ws;
  mo.w_dim = info.w_dim;
  mo.groups = t.groups;
  mo.pixel_norm = o.pixelnorm == "rows" ? PixelNormMode::kRows : PixelNormMode::kFeatures;
  mo.seed = o.seed;
  LevelsMapper mapper(mo);
  mapper->to(device);
  const fs::path out = o.out;
  const fs::path ckpt = out.string() + ".ckpt";
  ensure_output_dir(out.parent_path().empty() ? fs::path(".") : out.parent_path());

  json data_source = o.latents.empty() ? json{{"sample", o.sample}, {"truncation", o.truncation}}
                                       : json{{"latents", fs::absolute(o.latents).string()}};
  if (class_index) data_source["class"] = *class_index;
  const json run = {{"text", o.text},
                    {"options", t.to_json()},
                    {"mapper", mo.to_json()},
                    {"data", data_source},
                    {"steps", o.steps}};
  int64_t step = 0;
  json history = json::array();
  double interval_loss = 0;  // training loss summed since the last history entry
  int64_t interval_n = 0;
  std::unique_ptr<torch::optim::Optimizer> opt;
  std::error_code ec;
  if (o.resume && fs::exists(ckpt / "state.json", ec)) {
    std::ifstream in(ckpt / "state.json");
    const json state = json::parse(in);
    if (state.at("run") != run) {
      throw usage_error(
          "--resume: the checkpoint '" + ckpt.string() +
          "' belongs to a run with other options; rerun without --resume to start again");
    }
    auto loaded = load_mapper(ckpt / "mapper.pt", info.num_ws, info.w_dim, device);
    mapper = loaded.mapper;
    opt = make_mapper_optimizer(mapper, t);
    load_optimizer_state(ckpt / "optimizer.pt", *opt);
    step = state.at("step").get<int64_t>();
    history = state.at("history");
    interval_loss = state.at("interval_loss").get<double>();
    interval_n = state.at("interval_n").get<int64_t>();
    spdlog::info("resuming at step {} of {}", step, o.steps);
  } else {
    if (o.resume)
      spdlog::warn("--resume: no checkpoint at '{}', starting from step 0", ckpt.string());
    opt = make_mapper_optimizer(mapper, t);
  }
  const auto save_checkpoint = [&]() {
    ensure_output_dir(ckpt);
    save_mapper(ckpt / "mapper.pt", mapper, json{{"checkpoint_step", step}}, t.strength);
    save_optimizer_state(ckpt / "optimizer.pt", *opt);
    write_json(ckpt / "state.json", json{{"run", run},
                                         {"step", step},
                                         {"history", history},
                                         {"interval_loss", interval_loss},
                                         {"interval_n", interval_n}});
  };

  torch::Tensor text;
  {
    torch::NoGradGuard no_grad;
    text = clip.encode_text({o.text});
  }
  const ClipLoss clip_loss(clip, info.resolution, ClipInput::kRaw);
  const auto val_clip = [&]() {
    torch::NoGradGuard no_grad;
    mapper->eval();
    const double v =
        clip_loss(gen.synthesis(mapper->apply(val, t.strength)), text).mean().item<double>();
    mapper->train();
    return v;
  };
  if (history.empty()) history.push_back({{"step", 0}, {"val_clip_loss", val_clip()}});

  g_interrupted = false;
  auto* old_int = std::signal(SIGINT, on_signal);
  auto* old_term = std::signal(SIGTERM, on_signal);
  Progress progress("mapper '" + o.text + "'", static_cast<int>(o.steps));
  int64_t run_steps = 0;
  int code = 0;
  mapper->train();
  while (step < o.steps) {
    const auto idx = batch_indices(step, t.batch, train.size(0), o.seed).to(device);
    const auto losses =
        mapper_train_step(mapper, *opt, gen, clip_loss, identity ? &*identity : nullptr, text,
                          train.index_select(0, idx), t);
    if (!std::isfinite(losses.loss)) {
      save_checkpoint();
      throw input_error("training loss became NaN or Inf at step " + std::to_string(step) +
                        " (try a smaller --lr); the last checkpoint is in '" + ckpt.string() + "'");
    }
    ++step;
    ++run_steps;
    interval_loss += losses.loss;
    ++interval_n;
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f (clip %.4f)", losses.loss, losses.clip);
    progress.update(static_cast<int>(step), buf);
    if (step % o.val_every == 0 || step == o.steps) {
      history.push_back({{"step", step},
                         {"train_loss", interval_loss / double(interval_n)},
                         {"val_clip_loss", val_clip()}});
      interval_loss = 0;
      interval_n = 0;
    }
    if (g_interrupted || (o.max_steps > 0 && run_steps >= o.max_steps && step < o.steps)) {
      save_checkpoint();
      progress.finish();
      spdlog::warn("stopped at step {} of {}: checkpoint in '{}', continue with --resume", step,
                   o.steps, ckpt.string());
      code = static_cast<int>(ExitCode::kInterrupted);
      break;
    }
    if (o.image_every > 0 && (step % o.image_every == 0 || step == o.steps)) {
      // Held-out samples, before | after, so progress can be seen as well as read.
      torch::NoGradGuard no_grad;
      mapper->eval();
      const auto v = val.slice(0, 0, std::min<int64_t>(4, val.size(0)));
      const auto before = gen.synthesis(v);
      const auto after = gen.synthesis(mapper->apply(v, t.strength));
      mapper->train();
      std::vector<torch::Tensor> row;
      for (int64_t k = 0; k < v.size(0); ++k) {
        row.push_back(before[k]);
        row.push_back(after[k]);
      }
      const fs::path dir = out.string() + ".samples";
      ensure_output_dir(dir);
      char name[32];
      std::snprintf(name, sizeof name, "step%07lld.png", static_cast<long long>(step));
      write_image_row(dir / name, row);
    }
    if (step % o.ckpt_every == 0 && step < o.steps) save_checkpoint();
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  if (code != 0) return code;
  progress.finish();
  const json meta = {{"prompt", o.text},
                     {"generator_sha256", bundle.sha256("generator")},
                     {"run", run},
                     {"history", history},
                     {"steps", step}};
  save_mapper(out, mapper, meta, t.strength);
  fs::remove_all(ckpt, ec);
  spdlog::info("held-out CLIP loss {:.4f} -> {:.4f}",
               history.front()["val_clip_loss"].get<double>(),
               history.back()["val_clip_loss"].get<double>());
  std::cout << out.string() << "\n";
  return 0;
}

}  // namespace

void setup_mapper(CLI::App& app, Registry& reg) {
  auto* mapper = app.add_subcommand("mapper", "latent mappers (StyleCLIP §2)");
  mapper->require_subcommand(1);
  auto o = std::make_shared<MapperCliOptions>();
  auto* sub = mapper->add_subcommand("train", "train a mapper for one prompt");
  add_models_option(*sub, o->models);
  sub->add_option("--text", o->text, "the prompt, e.g. \"purple hair\"")->required();
  sub->add_option("--latents", o->latents,
                  "training latents [N, num_ws, w_dim] (e.g. e4e inversions of faces)");
  sub->add_option("--sample", o->sample,
                  "or: sample N latents from the generator (truncation --truncation)");
  sub->add_option("--truncation", o->truncation, "truncation psi for --sample")
      ->capture_default_str();
  add_class_option(*sub, o->class_index);
  sub->add_option("--out", o->out, "the mapper file to write")->required();
  sub->add_option("--steps", o->steps,
                  "training steps (the reference's 50000; a few hundred to a few thousand already "
                  "show the edit)")
      ->capture_default_str();
  sub->add_option("--batch", o->batch, "latents per step")->capture_default_str();
  sub->add_option("--optimizer", o->optimizer, "ranger (the reference's) or adam")
      ->capture_default_str();
  sub->add_option("--lr", o->lr, "learning rate")->capture_default_str();
  sub->add_option("--clip-lambda", o->clip_lambda, "weight of the CLIP term")
      ->capture_default_str();
  sub->add_option("--l2-lambda", o->l2_lambda, "weight of mean((w' - w)^2)")->capture_default_str();
  sub->add_option("--id-lambda", o->id_lambda,
                  "weight of the identity term (default 0.1 with an identity model, else 0)");
  sub->add_option("--strength", o->strength, "w' = w + strength*M(w)")->capture_default_str();
  sub->add_flag("--no-coarse", o->no_coarse, "do not edit W+ rows 0-3");
  sub->add_flag("--no-medium", o->no_medium, "do not edit W+ rows 4-7");
  sub->add_flag("--no-fine", o->no_fine, "do not edit W+ rows 8 and up");
  sub->add_option("--pixelnorm", o->pixelnorm,
                  "rows (the reference's, over each group's W+ rows) or features")
      ->capture_default_str();
  sub->add_option("--val-every", o->val_every, "held-out CLIP loss every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--ckpt-every", o->ckpt_every, "checkpoint every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--image-every", o->image_every,
                  "write <out>.samples/stepN.png (held-out latents, before | after) every N steps");
  sub->add_option("--max-steps", o->max_steps,
                  "stop after N steps of this run (checkpoint kept, exit 130)");
  sub->add_flag("--resume", o->resume, "continue from <out>.ckpt/");
  sub->add_option("--seed", o->seed, "initial weights, sampled latents and batch order")
      ->capture_default_str();
  add_device_options(*sub, o->device, o->precision);
  reg.push_back({sub, [o] { return run_mapper_train(*o); }});
}

}  // namespace styleclip::cli
