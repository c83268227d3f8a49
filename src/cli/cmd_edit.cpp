// `styleclip edit` — edit latents (or sampled seeds) with a text prompt.
// Engines: optimize (latent optimisation, algorithms §1). mapper and global arrive with their
// issues; photos with the alignment/inversion issue.
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct EditOptions {
  std::string models;
  std::string method = "optimize";
  std::string text;
  std::vector<std::string> inputs;
  std::string seeds;
  double truncation = 0.7;
  std::string out = "styleclip-out";
  std::string device = "auto";
  int batch = 4;
  bool compare = false;
  bool json = false;
  // optimize
  int steps = 300;
  double lr = 0.1;
  double l2_lambda = 0.008;
  std::optional<double> id_lambda;
  std::string mode = "edit";
  std::string space = "W+";
  std::string clip_input = "raw";
  int frames = 0;
};

struct Item {
  std::string name;
  json input;
  torch::Tensor ws;  // [1, num_ws, w_dim]
};

std::string seed_name(uint64_t seed) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "seed%04llu", static_cast<unsigned long long>(seed));
  return buf;
}

std::vector<Item> collect_inputs(
    const EditOptions& o, const Generator& gen,
    const std::vector<std::pair<std::string, torch::Tensor>>& latents) {
  std::vector<Item> items;
  torch::NoGradGuard no_grad;
  if (o.mode == "free") {
    items.push_back({"free", json{{"start", "w_avg"}}, gen.broadcast(gen.w_avg().unsqueeze(0))});
    return items;
  }
  if (!o.seeds.empty()) {
    for (const auto seed : parse_seeds(o.seeds)) {
      const auto w = gen.truncate(gen.mapping(gen.seed_z(seed).unsqueeze(0)), o.truncation);
      items.push_back(
          {seed_name(seed), json{{"seed", seed}, {"truncation", o.truncation}}, gen.broadcast(w)});
    }
  }
  for (const auto& [file, ws] : latents) {
    const auto stem = fs::path(file).stem().string();
    for (int64_t i = 0; i < ws.size(0); ++i) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03lld", static_cast<long long>(i));
      items.push_back({ws.size(0) > 1 ? stem + suffix : stem,
                       json{{"latent", fs::absolute(file).string()}, {"index", i}},
                       ws.slice(0, i, i + 1).to(gen.device())});
    }
  }
  return items;
}

int run_edit(const EditOptions& o) {
  if (o.method != "optimize") {
    throw usage_error("--method '" + o.method +
                      "' is not available yet in this build (available: optimize)");
  }
  if (o.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw usage_error("--text is empty: give the edit in words, e.g. --text \"a smiling face\"");
  }
  if (o.mode != "edit" && o.mode != "free")
    throw usage_error("invalid --mode '" + o.mode + "': expected edit or free");
  if (o.mode == "free" && (!o.inputs.empty() || !o.seeds.empty())) {
    throw usage_error("--mode free starts from the average latent: give no inputs or --seed");
  }
  if (o.mode == "edit" && o.inputs.empty() && o.seeds.empty()) {
    throw usage_error("nothing to edit: give latent files or --seed N[-M]");
  }
  OptimizeOptions opt;
  opt.steps = o.steps;
  opt.lr = o.lr;
  opt.l2_lambda = o.l2_lambda;
  opt.free_mode = o.mode == "free";
  opt.frame_every = o.frames;
  opt.clip_input = parse_clip_input(o.clip_input);
  if (o.space == "W+" || o.space == "w+") {
    opt.space = LatentSpace::kWPlus;
  } else if (o.space == "S" || o.space == "s") {
    opt.space = LatentSpace::kS;
  } else {
    throw usage_error("invalid --space '" + o.space + "': expected W+ or S");
  }

  const auto device = parse_device(o.device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const auto& ginfo = bundle.generator();
  std::vector<std::pair<std::string, torch::Tensor>> latents;
  for (const auto& f : o.inputs)
    latents.emplace_back(f, load_latents(f, ginfo.num_ws, ginfo.w_dim));

  const Generator gen(bundle, device);
  const Clip clip(bundle, device);
  std::optional<IdentityModel> identity;
  if (bundle.has("identity")) identity.emplace(bundle, device);
  opt.id_lambda = o.id_lambda.value_or(identity ? 0.005 : 0.0);
  if (!o.id_lambda) {
    spdlog::info(identity ? "identity loss on (lambda 0.005, the reference's Colab value)"
                          : "identity loss off: the bundle has no identity model");
  }
  validate(opt, identity.has_value());  // before anything is written
  const fs::path out_dir = o.out;
  ensure_output_dir(out_dir);

  torch::Tensor text;
  {
    torch::NoGradGuard no_grad;
    text = clip.encode_text({o.text});
  }
  const auto items = collect_inputs(o, gen, latents);
  const auto header = sidecar_header("edit", models, bundle.checksums());
  const std::string tag = slug(o.text) + ".optimize";
  int failures = 0;
  json summary = json::array();

  for (size_t start = 0; start < items.size(); start += static_cast<size_t>(o.batch)) {
    const size_t end = std::min(items.size(), start + static_cast<size_t>(o.batch));
    std::vector<torch::Tensor> rows;
    std::string names;
    for (size_t i = start; i < end; ++i) {
      rows.push_back(items[i].ws);
      names += (names.empty() ? "" : ", ") + items[i].name;
    }
    Progress progress("optimize " + names, opt.steps);
    OptimizeCallbacks cb;
    cb.progress = [&](int done, int, double loss) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "loss %.4f", loss);
      progress.update(done, buf);
    };
    std::vector<std::vector<fs::path>> frame_files(end - start);
    if (opt.frame_every > 0) {
      cb.frame = [&](int step, const torch::Tensor& images) {
        for (size_t i = start; i < end; ++i) {
          const auto dir = out_dir / (items[i].name + "." + tag + ".frames");
          ensure_output_dir(dir);
          char file[32];
          std::snprintf(file, sizeof file, "%05d.png", step);
          write_image(dir / file, images[static_cast<int64_t>(i - start)]);
          frame_files[i - start].push_back(dir / file);
        }
      };
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto res =
        optimize(gen, clip, identity ? &*identity : nullptr, torch::cat(rows, 0), text, opt, cb);
    progress.finish();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    for (size_t i = start; i < end; ++i) {
      const auto k = static_cast<int64_t>(i - start);
      const auto& item = items[i];
      const auto& row = res.rows[static_cast<size_t>(k)];
      const auto base = out_dir / (item.name + "." + tag);
      json outputs;
      const auto png = fs::path(base.string() + ".png");
      write_image(png, res.images_after[k]);
      outputs["image"] = png.filename().string();
      const auto latent = fs::path(base.string() + ".latent.pt");
      save_tensor_pt(latent, res.ws.slice(0, k, k + 1));
      outputs["latent"] = latent.filename().string();
      if (opt.space == LatentSpace::kS) {
        std::vector<torch::Tensor> s;
        for (const auto& layer : res.styles) s.push_back(layer.slice(0, k, k + 1));
        const auto sp = fs::path(base.string() + ".styles.pt");
        save_tensors_pt(sp, s);
        outputs["styles"] = sp.filename().string();
      }
      if (o.compare) {
        const auto cmp = fs::path(base.string() + ".compare.png");
        write_image_row(cmp, {res.images_before[k], res.images_after[k]});
        outputs["compare"] = cmp.filename().string();
      }
      if (!frame_files[i - start].empty()) {
        // The final image closes the sequence so the video ends where the edit did.
        const auto last = out_dir / (item.name + "." + tag + ".frames") / "final.png";
        write_image(last, res.images_after[k]);
        frame_files[i - start].push_back(last);
        outputs["frames"] = (item.name + "." + tag + ".frames");
        const auto mp4 = fs::path(base.string() + ".mp4");
        if (write_video(mp4, frame_files[i - start], 10.0)) {
          outputs["video"] = mp4.filename().string();
        } else {
          spdlog::warn("could not write '{}': this OpenCV cannot encode MP4 (the frames are kept)",
                       mp4.string());
        }
      }
      json side = header;
      side["engine"] = "optimize";
      side["prompt"] = o.text;
      side["input"] = item.input;
      side["options"] = opt.to_json();
      side["options"]["batch"] = o.batch;
      side["options"]["device"] = device.str();
      side["status"] = row.ok ? "ok" : "failed";
      if (!row.ok) side["error"] = row.error;
      side["metrics"] = {
          {"clip_similarity_before", row.clip_before},
          {"clip_similarity_after", row.clip_after},
          {"identity_similarity", row.identity ? json(*row.identity) : json(nullptr)},
          {"loss", row.loss},
          {"loss_clip", row.loss_clip},
          {"loss_l2", row.loss_l2},
          {"loss_id", row.loss_id},
          {"steps_done", row.steps_done}};
      side["timing"] = {{"steps_per_second", res.steps_per_second},
                        {"batch_seconds", wall},
                        {"batch_size", static_cast<int64_t>(end - start)}};
      side["outputs"] = outputs;
      write_json(fs::path(base.string() + ".json"), side);
      if (!row.ok) {
        ++failures;
        spdlog::error("{}: {}", item.name, row.error);
      } else {
        spdlog::info(
            "{}: CLIP similarity {:.4f} -> {:.4f}{}", item.name, row.clip_before, row.clip_after,
            row.identity ? fmt::format(", identity {:.4f}", *row.identity) : std::string());
      }
      summary.push_back({{"name", item.name},
                         {"status", side["status"]},
                         {"image", png.string()},
                         {"clip_similarity_before", row.clip_before},
                         {"clip_similarity_after", row.clip_after}});
      if (!o.json) std::cout << png.string() << "\n";
    }
  }
  if (o.json) std::cout << json{{"outputs", summary}, {"failed", failures}}.dump(2) << "\n";
  return failures > 0 ? static_cast<int>(ExitCode::kSomeInputsFailed) : 0;
}

}  // namespace

void setup_edit(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<EditOptions>();
  auto* sub = app.add_subcommand("edit", "edit latents or sampled seeds with a text prompt");
  // A repeated single-valued option takes its last value, so scripts can append overrides.
  sub->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_models_option(*sub, o->models);
  sub->add_option("--method", o->method, "engine: optimize (mapper, global: coming)")
      ->capture_default_str();
  sub->add_option("--text", o->text, "the edit, in words, e.g. \"a smiling face\"")->required();
  sub->add_option("inputs", o->inputs, "latent files (.pt / .npy) to edit");
  sub->add_option("--seed", o->seeds, "edit sampled images: N, N-M or a list");
  sub->add_option("--truncation", o->truncation, "truncation psi for --seed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  sub->add_option("--out", o->out, "output folder")->capture_default_str();
  sub->add_option("--device", o->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  sub->add_option("--batch", o->batch, "inputs optimised together")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_flag("--compare", o->compare, "also write <name>.compare.png: before | after");
  sub->add_flag("--json", o->json, "print a JSON summary on stdout");
  auto* g = sub->add_option_group("optimize", "latent optimisation (StyleCLIP §1)");
  g->add_option("--steps", o->steps, "Adam steps")->capture_default_str();
  g->add_option("--lr", o->lr,
                "peak learning rate (5 % warm-up, cosine ramp-down over the last 25 %)")
      ->capture_default_str();
  g->add_option("--l2-lambda", o->l2_lambda, "weight of the latent L2 term (a sum of squares)")
      ->capture_default_str();
  g->add_option("--id-lambda", o->id_lambda,
                "weight of the identity term (default 0.005 with an identity model, else 0)");
  g->add_option("--mode", o->mode, "edit, or free (CLIP term only, from the average latent)")
      ->capture_default_str();
  g->add_option("--space", o->space, "W+ or S (the non-toRGB style channels)")
      ->capture_default_str();
  g->add_option("--clip-input", o->clip_input,
                "raw: the [-1, 1] image as the reference feeds CLIP; normalized: CLIP's mean/std")
      ->capture_default_str();
  g->add_option("--frames", o->frames, "write an image every K steps, and an MP4 of them")
      ->capture_default_str();
  reg.push_back({sub, [o] { return run_edit(*o); }});
}

}  // namespace styleclip::cli
