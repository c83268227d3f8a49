// `styleclip edit` — edit latents (or sampled seeds) with words.
// Engines: optimize (latent optimisation, algorithms §1) and global (style-space directions,
// §3). The engines return tensors and metrics; this file reads inputs and writes every output
// the same way for both (image, latent or styles, sidecar, before|after pair).
#include <styleclip/engines/global_directions.h>
#include <styleclip/engines/mapper.h>
#include <styleclip/engines/optimize.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>

#include "batch.h"
#include "common.h"
#include "compare.h"
#include "inputs.h"
#include "photo.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct EditOptions {
  std::string models;
  std::string method = "optimize";
  std::vector<std::string> texts;
  std::string prompts_file;
  std::vector<std::string> inputs;
  bool recursive = false;
  std::vector<std::string> globs = {"*.pt", "*.npy"};
  bool overwrite = false;
  std::string shard;
  std::string golden;
  int golden_tolerance = 1;
  std::string seeds;
  double truncation = 0.7;
  std::optional<int64_t> class_index;
  std::string out = "styleclip-out";
  std::string device = "auto";
  std::string precision = "auto";
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
  bool cuda_graph = false;
  // global
  std::string neutral;
  std::string target_image;
  std::string neutral_image;
  std::optional<double> strength;  // global: 4.1 (the reference's Colab); mapper: the file's (0.1)
  std::string mapper;
  std::string threshold = "0.15";
  bool no_templates = false;
  std::string strength_sweep;
  std::string threshold_sweep;
  // photos
  PhotoOptions photo;
  bool paste_back = true;
};

/// What an engine hands back for a batch of items.
struct BatchResult {
  torch::Tensor before, after;        // [B, 3, R, R]
  torch::Tensor ws;                   // [B, num_ws, w_dim] edited W+, or undefined (edit in S)
  std::vector<torch::Tensor> styles;  // per layer [B, C], when the edit is in S
  std::vector<json> metrics;          // per row
  std::vector<std::string> errors;    // per row, empty when ok
  json timing;
};

/// CLIP similarity with the prompt before and after, and identity similarity where the bundle has
/// a model: the metrics every engine reports per input.
std::vector<json> judge_rows(const ClipLoss& judge, const IdentityModel* identity,
                             const torch::Tensor& text, const torch::Tensor& before,
                             const torch::Tensor& after) {
  torch::NoGradGuard no_grad;
  const auto b = judge.similarity(before, text).cpu();
  const auto a = judge.similarity(after, text).cpu();
  torch::Tensor ident;
  if (identity != nullptr) ident = IdentityLoss(*identity, before).similarity(after).cpu();
  std::vector<json> out;
  for (int64_t k = 0; k < before.size(0); ++k) {
    out.push_back(
        {{"clip_similarity_before", b[k].item<double>()},
         {"clip_similarity_after", a[k].item<double>()},
         {"identity_similarity", ident.defined() ? json(ident[k].item<double>()) : json(nullptr)}});
  }
  return out;
}

/// "a:b:n" → n evenly spaced values from a to b (n ≥ 2); empty spec → none.
std::vector<double> parse_sweep(const std::string& spec, const std::string& flag) {
  if (spec.empty()) return {};
  const auto bad = [&]() {
    return usage_error("invalid " + flag + " '" + spec + "': expected FROM:TO:COUNT, e.g. -5:5:11");
  };
  const auto c1 = spec.find(':');
  const auto c2 = spec.find(':', c1 == std::string::npos ? c1 : c1 + 1);
  if (c1 == std::string::npos || c2 == std::string::npos) throw bad();
  double a = 0;
  double b = 0;
  long n = 0;
  try {
    size_t u1 = 0;
    size_t u2 = 0;
    size_t u3 = 0;
    a = std::stod(spec.substr(0, c1), &u1);
    b = std::stod(spec.substr(c1 + 1, c2 - c1 - 1), &u2);
    n = std::stol(spec.substr(c2 + 1), &u3);
    if (u1 != c1 || u2 != c2 - c1 - 1 || u3 != spec.size() - c2 - 1) throw bad();
  } catch (const std::exception&) {
    throw bad();
  }
  if (n < 2 || n > 1000 || !std::isfinite(a) || !std::isfinite(b)) throw bad();
  std::vector<double> out;
  for (long i = 0; i < n; ++i) out.push_back(a + (b - a) * double(i) / double(n - 1));
  return out;
}

OptimizeOptions optimize_options(const EditOptions& o) {
  OptimizeOptions opt;
  opt.steps = o.steps;
  opt.lr = o.lr;
  opt.l2_lambda = o.l2_lambda;
  opt.free_mode = o.mode == "free";
  opt.frame_every = o.frames;
  opt.cuda_graph = o.cuda_graph;
  opt.clip_input = parse_clip_input(o.clip_input);
  if (o.space == "W+" || o.space == "w+") {
    opt.space = LatentSpace::kWPlus;
  } else if (o.space == "S" || o.space == "s") {
    opt.space = LatentSpace::kS;
  } else {
    throw usage_error("invalid --space '" + o.space + "': expected W+ or S");
  }
  return opt;
}

/// Writes one item's outputs (every file atomically; the sidecar last, so that its presence
/// marks a complete item) and records it in the summary; returns whether the edit succeeded.
bool write_item(const EditOptions& o, const fs::path& base_path, const std::string& prompt,
                const json& header, const json& options, const InputItem& item,
                const BatchResult& r, int64_t k, RunSummary& summary) {
  const auto base = base_path.string();
  ensure_output_dir(base_path.parent_path());
  json outputs;
  write_image(base + ".png", r.after[k]);
  outputs["image"] = fs::path(base + ".png").filename().string();
  if (r.ws.defined()) {
    save_tensor_pt(base + ".latent.pt", r.ws.slice(0, k, k + 1));
    outputs["latent"] = fs::path(base + ".latent.pt").filename().string();
  }
  if (!r.styles.empty()) {
    std::vector<torch::Tensor> s;
    for (const auto& layer : r.styles) s.push_back(layer.slice(0, k, k + 1));
    save_tensors_pt(base + ".styles.pt", s);
    outputs["styles"] = fs::path(base + ".styles.pt").filename().string();
  }
  const PhotoFace* photo = item.photo.get();
  if (o.compare) {
    // A photo's pair starts with the aligned crop itself, so the reconstruction's fidelity shows.
    if (photo != nullptr) {
      write_image_row(base + ".compare.png",
                      {to_generator_range(photo->crop), r.before[k], r.after[k]});
    } else {
      write_image_row(base + ".compare.png", {r.before[k], r.after[k]});
    }
    outputs["compare"] = fs::path(base + ".compare.png").filename().string();
  }
  std::string shown = base + ".png";
  if (photo != nullptr && o.paste_back && photo->alignment) {
    // The user's whole photo back, with the edited face warped into place (face_align.h).
    const auto pixels = read_image_rgb(photo->path, o.photo.max_pixels);
    if (pixels.size(0) != photo->height || pixels.size(1) != photo->width) {
      throw input_error("photo '" + photo->path.string() +
                        "' changed while it was being edited (run the edit again)");
    }
    const auto pasted = paste_back(pixels, to_uint8_hwc(r.after[k]), *photo->alignment);
    write_image(base + ".photo.png", to_generator_range(pasted));
    outputs["photo"] = fs::path(base + ".photo.png").filename().string();
    shown = base + ".photo.png";
    if (o.compare) {
      // A preview to look at (JPEG, at most 1024 px high): the photo itself is .photo.png.
      write_image_row(base + ".photo-compare.jpg", {to_generator_range(fit_height(pixels, 1024)),
                                                    to_generator_range(fit_height(pasted, 1024))});
      outputs["photo_compare"] = fs::path(base + ".photo-compare.jpg").filename().string();
    }
  }
  const auto& error = r.errors[static_cast<size_t>(k)];
  json side = header;
  side["engine"] = o.method;
  side["prompt"] = prompt;
  side["input"] = item.input;
  if (photo != nullptr) {
    side["input"].update(photo->to_json());
    side["input"]["paste_back"] = o.paste_back && photo->alignment.has_value();
  }
  side["options"] = options;
  side["status"] = error.empty() ? "ok" : "failed";
  if (!error.empty()) side["error"] = error;
  side["metrics"] = r.metrics[static_cast<size_t>(k)];
  side["timing"] = r.timing;
  side["outputs"] = outputs;
  write_json(base + ".json", side);
  if (error.empty()) {
    spdlog::info("{}: {}", item.name, side["metrics"].dump());
    summary.done({{"name", item.name},
                  {"prompt", prompt},
                  {"status", side["status"]},
                  {"image", base + ".png"},
                  {"metrics", side["metrics"]}});
  } else {
    spdlog::error("{}: {}", item.name, error);
    summary.failed(item.name + " (" + prompt + ")", error);
  }
  if (!o.json) std::cout << shown << "\n";
  return error.empty();
}

/// The prompts of a run: every --text, then the lines of --prompts FILE.
std::vector<std::string> gather_prompts(const EditOptions& o) {
  std::vector<std::string> prompts = o.texts;
  if (!o.prompts_file.empty()) {
    const auto more = read_prompts(o.prompts_file);
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  return prompts;
}

/// Marks items that cannot be written: two inputs with one output name, or an output that would
/// replace an input file.
void check_output_names(std::vector<InputItem>& items) {
  std::map<std::string, std::string> owner;
  for (auto& item : items) {
    if (!item.error.empty()) continue;
    const auto source = item.input.value("latent", item.input.value("photo", item.name));
    const auto [it, fresh] = owner.emplace(item.name, source);
    if (!fresh && it->second != source) {
      item.error = "output name '" + item.name + "' is already used by '" + it->second +
                   "' (rename one of the inputs or edit them in separate runs)";
      item.ws = torch::Tensor();
    }
  }
}

int run_edit(const EditOptions& o) {
  const bool global = o.method == "global";
  const bool use_mapper = o.method == "mapper";
  if (o.method != "optimize" && !global && !use_mapper) {
    throw usage_error("invalid --method '" + o.method + "': expected optimize, mapper or global");
  }
  if (use_mapper && o.mapper.empty()) {
    throw usage_error(
        "--method mapper needs --mapper FILE (train one with styleclip mapper train, or import "
        "StyleCLIP's with scripts/export_bundle.py --mapper)");
  }
  const bool image_pair = !o.target_image.empty() || !o.neutral_image.empty();
  auto prompts = gather_prompts(o);
  for (const auto& p : prompts) {
    if (p.find_first_not_of(" \t\r\n") == std::string::npos) {
      throw usage_error("--text is empty: give the edit in words, e.g. --text \"a smiling face\"");
    }
  }
  if (!image_pair && !use_mapper && prompts.empty()) {
    throw usage_error(
        "--text is empty: give the edit in words, e.g. --text \"a smiling face\" (or --prompts "
        "FILE)");
  }
  if (use_mapper && prompts.size() > 1) {
    throw usage_error("--method mapper edits toward its own prompt: give at most one --text");
  }
  if (image_pair && !prompts.empty() && prompts.size() > 1) {
    throw usage_error("--target-image/--neutral-image give one direction: give at most one --text");
  }
  if (prompts.empty()) prompts.emplace_back();  // mapper's own prompt, or the image pair
  if (o.mode != "edit" && o.mode != "free")
    throw usage_error("invalid --mode '" + o.mode + "': expected edit or free");
  if (o.mode == "free" && (global || use_mapper || !o.inputs.empty() || !o.seeds.empty())) {
    throw usage_error(
        "--mode free (optimize only) starts from the average latent: give no inputs or --seed");
  }
  if (o.mode == "edit" && o.inputs.empty() && o.seeds.empty()) {
    throw usage_error("nothing to edit: give photos, latent files, folders or --seed N[-M]");
  }
  std::optional<double> beta;
  if (global) {
    if (image_pair && (o.target_image.empty() || o.neutral_image.empty())) {
      throw usage_error("--target-image and --neutral-image go together");
    }
    if (!image_pair && o.neutral.find_first_not_of(" \t\r\n") == std::string::npos) {
      throw usage_error(
          "--method global needs --neutral TEXT (what the image shows now, e.g. \"face\")");
    }
    if (o.threshold != "auto") {
      try {
        size_t used = 0;
        beta = std::stod(o.threshold, &used);
        if (used != o.threshold.size()) throw std::invalid_argument(o.threshold);
      } catch (const std::exception&) {
        throw usage_error("invalid --threshold '" + o.threshold +
                          "': expected a number in [0, 1] or auto");
      }
      if (!(*beta >= 0.0 && *beta <= 1.0)) {
        throw usage_error("invalid --threshold '" + o.threshold +
                          "': must be in [0, 1] (relevances are cosines)");
      }
    }
  }
  const OptimizeOptions opt = optimize_options(o);
  const Shard shard = parse_shard(o.shard);
  const auto strengths = parse_sweep(o.strength_sweep, "--strength-sweep");
  const auto thresholds = parse_sweep(o.threshold_sweep, "--threshold-sweep");
  for (const double b : thresholds) {
    if (!(b >= 0.0 && b <= 1.0))
      throw usage_error("invalid --threshold-sweep '" + o.threshold_sweep +
                        "': values must be in [0, 1]");
  }

  const auto seeds = o.seeds.empty() ? std::vector<uint64_t>{} : parse_seeds(o.seeds);

  const auto device = parse_device(o.device);
  const auto precision = parse_precision(o.precision, device);
  if (o.cuda_graph && o.method != "optimize") {
    throw usage_error("--cuda-graph applies to --method optimize only (drop it for " + o.method +
                      ")");
  }
  check_cuda_graph(opt, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const auto& ginfo = bundle.generator();
  check_seeds(seeds, ginfo, models);
  const auto class_index = check_class(o.class_index, ginfo, models, !seeds.empty(), "--seed");
  // Inputs: photos by their extension (read, detected and inverted below), latent files by
  // anything else.
  std::vector<InputFile> latent_inputs;
  std::vector<InputFile> photo_inputs;
  for (auto& f : expand_inputs(o.inputs, o.recursive, o.globs)) {
    (is_photo_path(f.path) ? photo_inputs : latent_inputs).push_back(std::move(f));
  }
  const auto files = load_latent_files(latent_inputs, ginfo.num_ws, ginfo.w_dim);
  // Nothing usable at all: the one error is the answer (and nothing is written).
  if (seeds.empty() && photo_inputs.empty() && !files.empty() &&
      std::all_of(files.begin(), files.end(),
                  [](const LoadedFile& f) { return !f.error.empty(); })) {
    if (files.size() == 1) throw input_error(files.front().error);
    throw input_error("none of the " + std::to_string(files.size()) +
                      " inputs could be read; the first: " + files.front().error);
  }
  std::vector<torch::Tensor> pair_pixels;
  if (image_pair) {
    pair_pixels.push_back(read_image_rgb(o.target_image));
    pair_pixels.push_back(read_image_rgb(o.neutral_image));
  }
  if (global && !bundle.has("global_stats")) {
    throw bundle_error(
        "model bundle '" + models.string() +
        "' has no global-direction statistics: run styleclip global prepare --models " +
        models.string());
  }

  // The optimiser's options are checked before the models load (seconds at 1024 px), so that
  // a mistyped number is reported at once.
  const bool has_identity = bundle.has("identity");
  OptimizeOptions run_opt = opt;
  run_opt.precision = precision;
  if (!use_mapper && !global) {
    run_opt.id_lambda = o.id_lambda.value_or(has_identity ? 0.005 : 0.0);
    validate(run_opt, has_identity);
  }

  const Generator gen(bundle, device);
  const Clip clip(bundle, device);
  std::optional<IdentityModel> identity;
  if (has_identity) identity.emplace(bundle, device);
  std::optional<GlobalStats> stats;
  std::optional<MapperFile> mfile;
  json base_options;
  if (use_mapper) {
    mfile = load_mapper(o.mapper, ginfo.num_ws, ginfo.w_dim, device);
    (*mfile).mapper->eval();
    if (prompts.front().empty())
      prompts.front() = mfile->meta.value("prompt", fs::path(o.mapper).stem().string());
    base_options = {{"mapper", fs::absolute(o.mapper).string()},
                    {"strength", o.strength.value_or(mfile->strength)},
                    {"mapper_meta", mfile->meta}};
  } else if (global) {
    stats = GlobalStats::load(bundle.file("global_stats"), ginfo);
    stats->directions = stats->directions.to(device);
  } else {
    if (!o.id_lambda) {
      spdlog::info(identity ? "identity loss on (lambda 0.005, the reference's Colab value)"
                            : "identity loss off: the bundle has no identity model");
    }
    base_options = run_opt.to_json();
  }
  base_options["batch"] = o.batch;
  base_options["device"] = device.str();
  base_options["precision"] = to_string(precision);

  // Inputs: seeds, then every row of every file (sorted), then this process's shard of them.
  std::vector<InputItem> all_items;
  if (o.mode == "free") {
    all_items.push_back(
        {"free", json{{"start", "w_avg"}}, gen.broadcast(gen.w_avg().unsqueeze(0)), {}, nullptr});
  } else {
    all_items = collect_inputs(gen, seeds, o.truncation, class_index, files);
  }
  for (const auto& f : photo_inputs) {
    InputItem item{f.name,
                   json{{"photo", fs::absolute(f.path).lexically_normal().string()}},
                   {},
                   {},
                   std::make_shared<PhotoFace>()};
    item.photo->path = f.path;
    all_items.push_back(std::move(item));
  }
  check_output_names(all_items);
  const auto [first, last] = shard_range(all_items.size(), shard);
  std::vector<InputItem> items(all_items.begin() + static_cast<std::ptrdiff_t>(first),
                               all_items.begin() + static_cast<std::ptrdiff_t>(last));
  if (shard.count > 1) {
    spdlog::info("shard {}/{} ({}): inputs {}..{} of {}", shard.index, shard.count, shard.source,
                 first + 1, last, all_items.size());
  }
  std::set<std::string> input_paths;
  for (const auto& f : files) {
    std::error_code ec;
    input_paths.insert(fs::weakly_canonical(f.file.path, ec).string());
  }
  for (const auto& f : photo_inputs) {
    std::error_code ec;
    input_paths.insert(fs::weakly_canonical(f.path, ec).string());
  }

  const fs::path out_dir = o.out;
  // Photos of this shard: find the face, align it, invert it (cached in --out, so a second edit
  // of the same photo skips this). One photo alone that fails is the run's error (exit 4).
  if (!photo_inputs.empty()) {
    PhotoOptions popt = o.photo;
    popt.engine.precision = precision;
    const PhotoInverter inverter(bundle, models, gen, &clip, identity ? &*identity : nullptr, popt,
                                 out_dir);
    const bool alone = all_items.size() == 1;
    for (auto& item : items) {
      if (!item.photo || !item.error.empty()) continue;
      try {
        const fs::path path = item.photo->path;
        // The inversion's cache must not replace an input (a folder edited into itself).
        for (const auto& f : inverter.cache_files(path)) {
          std::error_code ec;
          if (input_paths.count(fs::weakly_canonical(f, ec).string()) > 0) {
            throw input_error("its inversion '" + f.string() +
                              "' would replace an input file (choose another --out)");
          }
        }
        *item.photo = inverter.locate(path);
        inverter.invert(*item.photo);
        item.ws = item.photo->ws.to(device);
      } catch (const Error& e) {
        if (alone) throw;
        item.error = e.what();
      }
    }
  }
  ensure_output_dir(out_dir);  // every check above has passed: now outputs may appear
  const auto header = sidecar_header("edit", models, bundle.checksums());
  RunSummary summary("edit");
  for (const auto& item : items) {
    if (!item.error.empty()) summary.failed(item.name, item.error);
  }
  const InterruptGuard interrupt_guard;
  bool interrupted = false;

  for (const auto& prompt : prompts) {
    if (interrupted) break;
    const std::string tag = slug(prompt.empty() ? "image-pair" : prompt) + "." + o.method;
    const auto output_base = [&](const InputItem& item) {
      return out_dir / (item.name + "." + tag);
    };
    // What is left to do for this prompt: usable inputs whose sidecar is not there yet.
    std::vector<const InputItem*> todo;
    for (const auto& item : items) {
      if (!item.error.empty()) continue;
      const auto base = output_base(item).string();
      std::error_code ec;
      bool clash = false;
      for (const char* ext : {".png", ".latent.pt", ".styles.pt", ".json", ".compare.png",
                              ".photo.png", ".photo-compare.jpg"}) {
        if (input_paths.count(fs::weakly_canonical(base + ext, ec).string()) > 0) clash = true;
      }
      if (clash) {
        summary.failed(item.name, "its output '" + base +
                                      ".*' would replace an input file (choose another --out)");
        continue;
      }
      if (!o.overwrite && fs::exists(base + ".json", ec)) {
        summary.skipped(item.name);
        continue;
      }
      todo.push_back(&item);
    }
    if (todo.empty()) continue;

    json options = base_options;
    torch::Tensor text;
    std::optional<ClipLoss> judge;
    GlobalEdit gedit;
    torch::Tensor dt;
    double strength = o.strength.value_or(use_mapper ? mfile->strength : 4.1);
    {
      torch::NoGradGuard no_grad;
      text = clip.encode_text({prompt.empty() ? std::string(" ") : prompt});
      judge.emplace(clip, ginfo.resolution, opt.clip_input);
    }
    if (global) {
      torch::NoGradGuard no_grad;
      dt = image_pair ? embedding_direction(clip.embed_image(pair_pixels[0]),
                                            clip.embed_image(pair_pixels[1]))
                      : text_direction(clip, prompt, o.neutral, !o.no_templates);
      const double b = beta ? *beta : auto_threshold(*stats, ginfo, dt);
      gedit = global_delta(*stats, ginfo, dt, b);
      spdlog::info(
          "global direction '{}': {} of {} channels pass threshold {:.3f} (max relevance {:.3f})",
          prompt, gedit.channels, stats->directions.size(0), b, gedit.max_relevance);
      if (gedit.channels == 0) {
        spdlog::error(
            "no channel passes --threshold {}: the images are returned unchanged (lower the "
            "threshold; the largest relevance is {:.3f})",
            b, gedit.max_relevance);
      } else if (gedit.channels < 10) {
        spdlog::warn(
            "only {} channels pass the threshold: the edit will be weak (lower --threshold)",
            gedit.channels);
      }
      options.update(json{{"neutral", o.neutral},
                          {"strength", strength},
                          {"threshold", b},
                          {"threshold_requested", o.threshold},
                          {"templates", !o.no_templates && !image_pair},
                          {"channels", gedit.channels},
                          {"max_relevance", gedit.max_relevance}});
      if (image_pair)
        options["target_image"] = o.target_image, options["neutral_image"] = o.neutral_image;
    }

    for (size_t start = 0; start < todo.size() && !interrupted;
         start += static_cast<size_t>(o.batch)) {
      if (InterruptGuard::interrupted()) {
        interrupted = true;
        break;
      }
      const size_t end = std::min(todo.size(), start + static_cast<size_t>(o.batch));
      std::vector<torch::Tensor> rows;
      for (size_t i = start; i < end; ++i) rows.push_back(todo[i]->ws);
      // For messages: the batch's inputs, abbreviated beyond three.
      std::string names = todo[start]->name;
      if (end - start == 2) names += ", " + todo[start + 1]->name;
      if (end - start == 3) names += ", " + todo[start + 1]->name + ", " + todo[end - 1]->name;
      if (end - start > 3) names += " … " + todo[end - 1]->name;
      const auto ws = torch::cat(rows, 0);
      const auto t0 = std::chrono::steady_clock::now();
      // Sweeps: a grid per input so the user sees the effect instead of guessing (and an MP4
      // over strength).
      const auto sweep = [&](const std::vector<double>& values, const std::string& what,
                             const std::function<torch::Tensor(double)>& render) {
        if (values.empty()) return;
        std::vector<torch::Tensor> renders;
        for (const double v : values) renders.push_back(render(v));
        for (int64_t k = 0; k < ws.size(0); ++k) {
          const auto base =
              output_base(*todo[start + static_cast<size_t>(k)]).string() + "." + what + "-sweep";
          std::vector<torch::Tensor> row;
          for (const auto& img : renders) row.push_back(img[k]);
          ensure_output_dir(fs::path(base).parent_path());
          write_image_row(base + ".png", row);
          if (what == "strength") {
            std::vector<fs::path> frames;
            ensure_output_dir(base + ".frames");
            for (size_t i = 0; i < row.size(); ++i) {
              char name[32];
              std::snprintf(name, sizeof name, "%05zu.png", i);
              frames.push_back(fs::path(base + ".frames") / name);
              write_image(frames.back(), row[i]);
            }
            if (!write_video(base + ".mp4", frames, 10.0)) {
              spdlog::warn("could not write '{}.mp4': this OpenCV cannot encode MP4", base);
            }
          }
        }
      };
      BatchResult r;
      // Out of memory on a batch: name the inputs and the way out (exit 5); outputs already
      // written stay, and a rerun with a smaller --batch skips them.
      const auto out_of_memory = [&](const std::string& detail) {
        return device_error("out of memory editing " + names + " (" + std::to_string(end - start) +
                            " inputs per batch): use a smaller --batch (" + detail + ")");
      };
      try {
        if (use_mapper) {
          // Engine 2 at inference: many latents per generator call, w + strength·M(w).
          torch::NoGradGuard no_grad;
          const PrecisionScope scope(precision, device);
          r.before = gen.synthesis(ws);
          r.ws = mfile->mapper->apply(ws, strength);
          r.after = gen.synthesis(r.ws);
          r.metrics = judge_rows(*judge, identity ? &*identity : nullptr, text, r.before, r.after);
          r.errors.assign(r.metrics.size(), "");
          const double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          r.timing = {{"batch_seconds", secs},
                      {"batch_size", ws.size(0)},
                      {"latents_per_second", double(ws.size(0)) / secs}};
          sweep(strengths, "strength",
                [&](double a) { return gen.synthesis(mfile->mapper->apply(ws, a)); });
        } else if (global) {
          torch::NoGradGuard no_grad;
          const PrecisionScope scope(precision, device);
          const auto s = gen.styles(ws);
          r.before = gen.synthesis_from_styles(s);
          r.styles = apply_delta(s, gedit, strength);
          r.after = gedit.channels > 0 ? gen.synthesis_from_styles(r.styles) : r.before;
          r.metrics = judge_rows(*judge, identity ? &*identity : nullptr, text, r.before, r.after);
          for (auto& m : r.metrics) m["channels"] = gedit.channels;
          r.errors.assign(
              r.metrics.size(),
              gedit.channels > 0 ? "" : "no channel passed the threshold: image unchanged");
          const double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          r.timing = {{"batch_seconds", secs}, {"batch_size", ws.size(0)}};
          sweep(strengths, "strength",
                [&](double a) { return gen.synthesis_from_styles(apply_delta(s, gedit, a)); });
          sweep(thresholds, "threshold", [&](double b) {
            return gen.synthesis_from_styles(
                apply_delta(s, global_delta(*stats, ginfo, dt, b), strength));
          });
        } else {
          Progress progress("optimize " + names, run_opt.steps);
          OptimizeCallbacks cb;
          cb.progress = [&](int done, int, double loss) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "loss %.4f", loss);
            progress.update(done, buf);
          };
          cb.should_stop = [] { return InterruptGuard::interrupted(); };
          std::vector<std::vector<fs::path>> frame_files(end - start);
          if (run_opt.frame_every > 0) {
            cb.frame = [&](int step, const torch::Tensor& images) {
              for (size_t i = start; i < end; ++i) {
                const auto dir = output_base(*todo[i]).string() + ".frames";
                ensure_output_dir(dir);
                char file[32];
                std::snprintf(file, sizeof file, "%05d.png", step);
                write_image(fs::path(dir) / file, images[static_cast<int64_t>(i - start)]);
                frame_files[i - start].push_back(fs::path(dir) / file);
              }
            };
          }
          const auto res =
              optimize(gen, clip, identity ? &*identity : nullptr, ws, text, run_opt, cb);
          if (res.stopped) {
            // Abandon this batch: its outputs were never started, the rerun redoes it.
            interrupted = true;
            break;
          }
          progress.finish();
          const double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          r.before = res.images_before;
          r.after = res.images_after;
          if (run_opt.space == LatentSpace::kWPlus) {
            r.ws = res.ws;
          } else {
            r.styles = res.styles;
          }
          for (size_t k = 0; k < res.rows.size(); ++k) {
            const auto& row = res.rows[k];
            r.metrics.push_back(
                {{"clip_similarity_before", row.clip_before},
                 {"clip_similarity_after", row.clip_after},
                 {"identity_similarity", row.identity ? json(*row.identity) : json(nullptr)},
                 {"loss", row.loss},
                 {"loss_clip", row.loss_clip},
                 {"loss_l2", row.loss_l2},
                 {"loss_id", row.loss_id},
                 {"steps_done", row.steps_done}});
            r.errors.push_back(row.ok ? "" : row.error);
          }
          r.timing = {{"steps_per_second", res.steps_per_second},
                      {"batch_seconds", secs},
                      {"batch_size", ws.size(0)}};
          // Frame sequences end with the final image, then become a video where OpenCV can
          // encode MP4.
          for (size_t i = start; i < end; ++i) {
            auto& frames = frame_files[i - start];
            if (frames.empty()) continue;
            const auto dir = fs::path(output_base(*todo[i]).string() + ".frames");
            write_image(dir / "final.png", res.images_after[static_cast<int64_t>(i - start)]);
            frames.push_back(dir / "final.png");
            const auto mp4 = output_base(*todo[i]).string() + ".mp4";
            if (!write_video(mp4, frames, 10.0)) {
              spdlog::warn(
                  "could not write '{}': this OpenCV cannot encode MP4 (the frames are kept)", mp4);
            }
          }
        }
      } catch (const std::bad_alloc&) {
        throw out_of_memory("the allocator failed");
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {  // c10::Error, or a TorchScript interpreter error
        const auto m = torch_message(e);
        if (is_out_of_memory(m)) throw out_of_memory(m);
        throw;
      }
      // The batch is computed: write it whole (a signal now waits for the writes).
      for (size_t i = start; i < end; ++i) {
        write_item(o, output_base(*todo[i]), prompt, header, options, *todo[i], r,
                   static_cast<int64_t>(i - start), summary);
      }
    }
  }
  if (InterruptGuard::interrupted()) interrupted = true;
  auto report = summary.finish(interrupted);
  int code = summary.failures() > 0 ? static_cast<int>(ExitCode::kSomeInputsFailed) : 0;
  if (interrupted) code = static_cast<int>(ExitCode::kInterrupted);
  if (!o.golden.empty() && !interrupted) {
    CompareTolerance tol;
    tol.pixel_levels = o.golden_tolerance;
    const auto cmp = compare_folders(o.golden, out_dir, tol);
    log_report(cmp, o.golden, out_dir);
    report["golden"] = cmp.to_json();
    if (!cmp.ok() && code == 0) code = static_cast<int>(ExitCode::kSomeInputsFailed);
  }
  if (o.json) std::cout << report.dump(2) << "\n";
  return code;
}

}  // namespace

void setup_edit(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<EditOptions>();
  auto* sub = app.add_subcommand("edit", "edit photos, latents or sampled seeds with words");
  add_models_option(*sub, o->models);
  sub->add_option("--method", o->method, "engine: optimize, mapper or global")
      ->capture_default_str();
  sub->add_option("--text", o->texts,
                  "the edit, in words, e.g. \"a smiling face\" (global: the target); repeat "
                  "for several prompts")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  sub->add_option("--prompts", o->prompts_file, "a file with one prompt per line ('#' comments)");
  sub->add_option("inputs", o->inputs,
                  "photos (.png .jpg .webp .tif .bmp: the face is found, aligned and inverted), "
                  "latent files (.pt / .npy) and folders of them");
  sub->add_flag("--recursive,-r", o->recursive, "look into sub-folders of folder inputs");
  sub->add_option("--glob", o->globs, "file patterns taken from folders (repeatable)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  sub->add_flag("--overwrite", o->overwrite,
                "recompute inputs whose outputs exist (default: skip them)");
  sub->add_option("--shard", o->shard,
                  "K/N: take the K-th of N slices of the sorted inputs; auto: from Slurm "
                  "(SLURM_ARRAY_TASK_ID) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX)");
  sub->add_option("--golden", o->golden,
                  "after the run, compare --out with this folder (exit 1 on drift)");
  sub->add_option("--golden-tolerance", o->golden_tolerance,
                  "8-bit image levels allowed by --golden")
      ->capture_default_str();
  sub->add_option("--seed", o->seeds, "edit sampled images: N, N-M or a list");
  sub->add_option("--truncation", o->truncation, "truncation psi for --seed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  add_class_option(*sub, o->class_index);
  sub->add_option("--out", o->out, "output folder")->capture_default_str();
  add_device_options(*sub, o->device, o->precision);
  sub->add_option("--batch", o->batch, "inputs processed together")
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
  g->add_flag("--cuda-graph", o->cuda_graph,
              "CUDA: replay one captured step as a CUDA graph (fewer kernel launches; same "
              "arithmetic)");
  auto* ph = sub->add_option_group(
      "photos", "photo inputs: find the face, align it, invert it, paste the edit back");
  add_photo_options(*ph, o->photo, "--invert-steps");
  ph->add_flag("--paste-back,!--no-paste-back", o->paste_back,
               "also write <name>.photo.png: the whole photo with the edited face put back "
               "(default on)");
  ph->add_flag("--overwrite-inversion", o->photo.overwrite,
               "invert photos again even when a cached inversion matches");
  auto* gl = sub->add_option_group("global", "global style-space directions (StyleCLIP §3)");
  gl->add_option("--neutral", o->neutral,
                 "what the image shows now, e.g. \"face\" (the target is --text)");
  gl->add_option("--strength", o->strength,
                 "global: alpha, how far along the direction (default 4.1; negative reverses); "
                 "mapper: w + strength·M(w) (default: the mapper's, 0.1)");
  gl->add_option("--mapper", o->mapper, "with --method mapper: the mapper file");
  gl->add_option("--threshold", o->threshold, "beta in [0, 1]: minimum channel relevance, or auto")
      ->capture_default_str();
  gl->add_flag("--no-templates", o->no_templates,
               "use the raw sentences instead of the 79 prompt templates");
  gl->add_option("--target-image", o->target_image,
                 "direction from an image pair instead of texts: the target image");
  gl->add_option("--neutral-image", o->neutral_image, "… and the neutral image");
  gl->add_option(
      "--strength-sweep", o->strength_sweep,
      "FROM:TO:COUNT: also write a grid (and MP4) over strengths (global, mapper), e.g. -5:5:11");
  gl->add_option(
      "--threshold-sweep", o->threshold_sweep,
      "FROM:TO:COUNT: also write a grid over thresholds at --strength, e.g. 0.05:0.25:5");
  reg.push_back({sub, [o] { return run_edit(*o); }});
}

}  // namespace styleclip::cli
