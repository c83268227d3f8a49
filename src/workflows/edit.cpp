// An edit run through any engine (edit.h): inputs → engine batches → outputs and sidecars.
// The engines return tensors and metrics; every output is written here, the same way for all.
#include <styleclip/workflows/edit.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>
#include <styleclip/models/identity.h>
#include <styleclip/runtime.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/compare.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/report.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

/// The prompts of a run, checked against what the engine takes: every --text, then the lines of
/// the prompts file; one empty prompt stands for "the engine's own" (a mapper, an image pair).
std::vector<std::string> gather_prompts(const EditRun& run, const EngineInfo& engine) {
  std::vector<std::string> prompts = run.prompts;
  if (!run.prompts_file.empty()) {
    const auto more = read_prompts(run.prompts_file);
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  for (const auto& p : prompts) {
    if (blank(p))
      throw usage_error("--text is empty: give the edit in words, e.g. --text \"a smiling face\"");
  }
  if (prompts.empty() && engine.needs_prompt(run.settings)) {
    throw usage_error(
        "--text is empty: give the edit in words, e.g. --text \"a smiling face\" (or --prompts "
        "FILE)");
  }
  if (prompts.size() > 1) {
    const auto why = engine.one_prompt_only(run.settings);
    if (!why.empty()) throw usage_error(why);
  }
  if (engine.combines_prompts(run.settings)) {
    if (prompts.size() < 2) {
      throw usage_error(
          "--combine joins several edits: give two or more --text (or --prompts FILE)");
    }
    if (engine.check_combined) engine.check_combined(run.settings, prompts.size());
  }
  if (prompts.empty()) prompts.emplace_back();
  return prompts;
}

/// Usage error for an option that belongs to another engine (e.g. --mapper with optimize).
void refuse_foreign_options(const EditRun& run, const EngineInfo& engine) {
  for (const auto& name : run.settings.names()) {
    const bool own = std::any_of(engine.options.begin(), engine.options.end(),
                                 [&](const EngineOption& o) { return o.name == name; });
    if (own) continue;
    std::string owners;
    for (const auto& e : engines()) {
      for (const auto& o : e.options) {
        if (o.name == name) owners += std::string(owners.empty() ? "" : " or ") + e.name;
      }
    }
    throw usage_error(name + " applies to --method " + (owners.empty() ? "?" : owners) +
                      " (drop it for " + engine.name + ")");
  }
}

std::string canonical_path(const fs::path& p) {
  std::error_code ec;
  return fs::weakly_canonical(p, ec).string();
}

/// "a, b … z": a batch's inputs for messages.
std::string batch_names(const std::vector<const InputItem*>& todo, size_t start, size_t end) {
  std::string names = todo[start]->name;
  if (end - start == 2) names += ", " + todo[start + 1]->name;
  if (end - start == 3) names += ", " + todo[start + 1]->name + ", " + todo[end - 1]->name;
  if (end - start > 3) names += " … " + todo[end - 1]->name;
  return names;
}

/// Writes frames (PNG files in `<base>.frames/`) and, where this OpenCV encodes MP4, a video of
/// them; returns the video's name when one was written.
std::optional<std::string> write_frames_video(const std::string& base,
                                              const std::vector<fs::path>& frames) {
  if (write_video(base + ".mp4", frames, 10.0)) return fs::path(base + ".mp4").filename().string();
  spdlog::warn("could not write '{}.mp4': this OpenCV cannot encode MP4 (the frames are kept)",
               base);
  return std::nullopt;
}

class EditRunner {
 public:
  explicit EditRunner(const EditRun& run)
      : run_(run), engine_(find_engine(run.method)), prompts_(gather_prompts(run, engine_)) {}

  EditReport go() {
    check_and_load();
    // From here on Ctrl-C finishes or abandons the current batch instead of killing the process.
    batch_->start();
    if (engine_.combines_prompts(run_.settings)) {
      run_prompt(prompts_);  // one output toward all of them
    } else {
      for (const auto& prompt : prompts_) {
        if (batch_->stop_requested()) break;
        run_prompt({prompt});
      }
    }
    EditReport report = batch_->finish(items_.size());
    if (run_.report) {
      const auto page = write_edit_report(run_.out);
      spdlog::info("report: {} ({} results)", page.file.string(), page.items);
      report.summary["report"] = page.file.string();
    }
    if (!run_.golden.empty() && report.exit_code != static_cast<int>(ExitCode::kInterrupted)) {
      CompareTolerance tol;
      tol.pixel_levels = run_.golden_tolerance;
      const auto cmp = compare_folders(run_.golden, run_.out, tol);
      log_report(cmp, run_.golden, run_.out);
      report.summary["golden"] = cmp.to_json();
      if (!cmp.ok() && report.exit_code == 0)
        report.exit_code = static_cast<int>(ExitCode::kSomeInputsFailed);
    }
    return report;
  }

 private:
  void check_and_load();
  void gather_items(const std::vector<uint64_t>& seeds, const std::vector<InputFile>& latents,
                    const std::vector<InputFile>& styles, const std::vector<InputFile>& photos);
  void invert_photos(const std::vector<InputFile>& photos);
  void find_tuned_generator(InputItem& item) const;
  bool run_tuned(const std::vector<const InputItem*>& todo, size_t at,
                 const std::vector<std::string>& prompts, const std::string& text,
                 const json& options);
  void run_prompt(const std::vector<std::string>& prompts);
  bool run_batch(const std::vector<const InputItem*>& todo, size_t start, size_t end,
                 const std::string& prompt, const json& options);
  void write_sweeps(const std::vector<const InputItem*>& todo, size_t start,
                    const torch::Tensor& ws, json& extra);
  void write_item(const InputItem& item, const std::string& prompt, const json& options,
                  const EditResult& r, int64_t k, json outputs);
  [[nodiscard]] fs::path output_base(const InputItem& item) const {
    return run_.out / (item.name + "." + tag_);
  }
  [[nodiscard]] EngineHooks hooks();

  const EditRun& run_;
  const EngineInfo& engine_;
  std::vector<std::string> prompts_;
  std::optional<Bundle> bundle_;  // opened once the options are known to be good
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::kFp32;
  std::optional<Generator> gen_;
  std::optional<Clip> clip_;
  std::optional<IdentityModel> identity_;
  std::unique_ptr<Engine> engine_impl_;
  std::vector<InputItem> all_items_, items_;
  std::set<std::string> input_paths_;
  json header_;
  std::optional<BatchRun> batch_;  // the shard, skipping, Ctrl-C and the summary
  InputTransform transform_;       // StyleGAN3's --translate/--rotate
  std::string tag_;
  // Per batch: each row's frame files (optimisation's --frames).
  std::vector<std::vector<fs::path>> frames_;
};

EngineHooks EditRunner::hooks() {
  EngineHooks h;
  h.should_stop = [this] { return batch_->stop_requested(); };
  h.log = run_.log ? run_.log : [](LogLevel level, const std::string& m) {
    const char* names[] = {"debug", "info", "warning", "error"};
    std::fprintf(stderr, "%s: %s\n", names[static_cast<int>(level)], m.c_str());
  };
  return h;
}

void EditRunner::check_and_load() {
  refuse_foreign_options(run_, engine_);
  const bool takes_inputs = engine_.takes_inputs(run_.settings);
  if (!takes_inputs && (!run_.inputs.empty() || !run_.seeds.empty())) {
    throw usage_error(
        "--mode free (optimize only) starts from the average latent: give no "
        "inputs or --seed");
  }
  if (takes_inputs && run_.inputs.empty() && run_.seeds.empty()) {
    throw usage_error("nothing to edit: give photos, latent files, folders or --seed N[-M]");
  }
  // What a library caller can get wrong (the CLI checks these ranges itself).
  if (run_.photo.with == "pti") validate(run_.photo.pti);
  if (run_.batch < 1 || run_.batch > 4096) throw usage_error("invalid --batch: must be 1 to 4096");
  if (!(run_.truncation >= 0.0 && run_.truncation <= 2.0))
    throw usage_error("invalid --truncation: must be a number in [0, 2]");
  if (run_.golden_tolerance < 0) throw usage_error("invalid --golden-tolerance: must be 0 or more");
  const auto seeds = run_.seeds.empty() ? std::vector<uint64_t>{} : parse_seeds(run_.seeds);
  batch_.emplace("edit", run_.shard, run_.overwrite);
  device_ = parse_device(run_.device);
  precision_ = parse_precision(run_.precision, device_);
  bundle_.emplace(Bundle::open(run_.models));
  const auto& ginfo = bundle_->generator();
  check_seeds(seeds, ginfo, run_.models);
  transform_ = check_input_transform(run_.translate, run_.rotate, ginfo);
  // The engine's options are checked before the models load (seconds at 1024 px), so that a
  // mistyped number is reported at once.
  if (engine_.check) engine_.check(run_.settings, *bundle_, device_);
  // Inputs: photos by their extension (read, detected and inverted below), latent files by
  // anything else.
  std::vector<InputFile> latents;
  std::vector<InputFile> styles;
  std::vector<InputFile> photos;
  for (auto& f : expand_inputs(run_.inputs, run_.recursive, run_.globs)) {
    (is_photo_path(f.path)    ? photos
     : is_styles_path(f.path) ? styles
                              : latents)
        .push_back(std::move(f));
  }
  if (!styles.empty()) {
    const auto why = engine_.styles_refused(run_.settings);
    if (!why.empty()) {
      throw usage_error("'" + styles.front().path.string() + "' holds style codes: " + why);
    }
  }
  gather_items(seeds, latents, styles, photos);
  invert_photos(photos);
  ensure_output_dir(run_.out);  // every check above has passed: now outputs may appear
  header_ = sidecar_header("edit", run_.models, bundle_->checksums());
  for (const auto& item : items_) {
    if (!item.error.empty()) batch_->summary().failed(item.name, item.error);
  }
}

void EditRunner::gather_items(const std::vector<uint64_t>& seeds,
                              const std::vector<InputFile>& latents,
                              const std::vector<InputFile>& styles,
                              const std::vector<InputFile>& photos) {
  const auto& ginfo = bundle_->generator();
  const auto class_index =
      check_class(run_.class_index, ginfo, run_.models, !seeds.empty(), "--seed");
  const auto files = load_latent_files(latents, ginfo.num_ws, ginfo.w_dim);
  require_some_readable(files, !seeds.empty() || !photos.empty() || !styles.empty());
  gen_.emplace(*bundle_, device_);
  auto style_items = collect_styles(*gen_, styles);
  if (!style_items.empty() && seeds.empty() && photos.empty() &&
      std::all_of(files.begin(), files.end(), [](const auto& f) { return !f.error.empty(); }) &&
      std::all_of(style_items.begin(), style_items.end(),
                  [](const auto& i) { return !i.error.empty(); })) {
    throw input_error(style_items.size() + files.size() == 1
                          ? style_items.front().error
                          : "none of the inputs could be read; the first style file: " +
                                style_items.front().error);
  }
  apply_input_transform(*gen_, transform_);
  clip_.emplace(*bundle_, device_);
  if (bundle_->has("identity")) identity_.emplace(*bundle_, device_);
  EngineModels models{&*bundle_, &*gen_,    &*clip_, identity_ ? &*identity_ : nullptr,
                      device_,   precision_};
  engine_impl_ = engine_.create(models, run_.settings);
  // Inputs: seeds, then every row of every file (sorted), then this process's shard of them.
  if (!engine_.takes_inputs(run_.settings)) {
    all_items_.push_back({"free",
                          json{{"start", "w_avg"}},
                          gen_->broadcast(gen_->w_avg().unsqueeze(0)),
                          {},
                          {},
                          {}});
  } else {
    all_items_ = collect_inputs(*gen_, seeds, run_.truncation, class_index, files);
    for (auto& item : all_items_) find_tuned_generator(item);
    for (auto& item : style_items) all_items_.push_back(std::move(item));
  }
  for (const auto& f : photos) {
    InputItem item{f.name,
                   json{{"photo", fs::absolute(f.path).lexically_normal().string()}},
                   {},
                   {},
                   std::make_shared<PhotoFace>(),
                   {}};
    item.photo->path = f.path;
    all_items_.push_back(std::move(item));
  }
  mark_name_clashes(all_items_);
  const auto [first, last] = batch_->take(all_items_.size());
  items_.assign(all_items_.begin() + static_cast<std::ptrdiff_t>(first),
                all_items_.begin() + static_cast<std::ptrdiff_t>(last));
  for (const auto& f : files) input_paths_.insert(canonical_path(f.file.path));
  for (const auto& f : styles) input_paths_.insert(canonical_path(f.path));
  for (const auto& f : photos) input_paths_.insert(canonical_path(f.path));
}

/// Photos of this shard: find the face, align it, invert it (cached in --out, so a second edit
/// of the same photo skips this). One photo alone that fails is the run's error (exit 4).
void EditRunner::invert_photos(const std::vector<InputFile>& photos) {
  if (photos.empty()) return;
  PhotoOptions popt = run_.photo;
  popt.engine.precision = precision_;
  const PhotoInverter inverter(*bundle_, run_.models, *gen_, &*clip_,
                               identity_ ? &*identity_ : nullptr, popt, run_.out);
  const bool alone = all_items_.size() == 1;
  for (auto& item : items_) {
    if (!item.photo || !item.error.empty()) continue;
    try {
      const fs::path path = item.photo->path;
      // The inversion's cache must not replace an input (a folder edited into itself).
      for (const auto& f : inverter.cache_files(item.name)) {
        if (input_paths_.count(canonical_path(f)) > 0) {
          throw input_error("its inversion '" + f.string() +
                            "' would replace an input file (choose another --out)");
        }
      }
      *item.photo = inverter.locate(path, item.name);
      inverter.invert(*item.photo);
      item.ws = item.photo->ws.to(device_);
      if (!item.photo->pti_weights.empty()) {
        item.input["pti_weights"] = fs::absolute(item.photo->pti_weights).string();
      }
    } catch (const Error& e) {
      if (alone) throw;
      item.error = e.what();
    }
  }
}

/// A latent that `invert --with pti` wrote has its tuned generator named in the sidecar beside
/// it (`NAME.invert.json` for `NAME.latent.pt`): the edit uses it. A tuned generator that is
/// missing or changed since is the item's error.
void EditRunner::find_tuned_generator(InputItem& item) const {
  const auto latent = item.input.value("latent", std::string());
  const std::string suffix = ".latent.pt";
  if (!item.error.empty() || latent.size() <= suffix.size() ||
      latent.compare(latent.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return;
  }
  const fs::path sidecar = latent.substr(0, latent.size() - suffix.size()) + ".invert.json";
  std::error_code ec;
  if (!fs::exists(sidecar, ec)) return;
  json side;
  try {
    std::ifstream in(sidecar);
    side = json::parse(in);
  } catch (const std::exception&) {
    return;  // not a sidecar of ours: the latent is used as it is
  }
  const auto outputs = side.value("outputs", json::object());
  const auto name = outputs.value("pti_weights", std::string());
  if (name.empty()) return;
  const auto weights = sidecar.parent_path() / name;
  if (!fs::exists(weights, ec) ||
      sha256_file(weights) != outputs.value("pti_weights_sha256", std::string())) {
    item.error = "its tuned generator '" + weights.string() + "' (named in '" + sidecar.string() +
                 "') is missing or has changed: run styleclip invert --with pti again";
    item.ws = torch::Tensor();
    return;
  }
  item.input["pti_weights"] = weights.string();
}

/// One item through an engine made for its own tuned generator (a private copy of the bundle's
/// with the tuned tensors); the options are the run's, plus the weights file.
bool EditRunner::run_tuned(const std::vector<const InputItem*>& todo, size_t at,
                           const std::vector<std::string>& prompts, const std::string& text,
                           const json& options) {
  const fs::path path = todo[at]->input.at("pti_weights").get<std::string>();
  std::optional<Generator> copy;
  try {
    copy.emplace(*gen_, load_weights(path), "tuned weights '" + path.string() + "'");
  } catch (const Error& e) {  // weights of another generator: this input fails, the run goes on
    batch_->summary().failed(todo[at]->name, e.what());
    return true;
  }
  const Generator& tuned = *copy;
  EngineModels models{&*bundle_, &tuned,    &*clip_, identity_ ? &*identity_ : nullptr,
                      device_,   precision_};
  auto engine = engine_.create(models, run_.settings);
  if (prompts.size() > 1) {
    (void)engine->prepare_combined(prompts, {});
  } else {
    (void)engine->prepare(text, {});
  }
  std::swap(engine_impl_, engine);  // run_batch edits with engine_impl_
  bool finished = false;
  try {
    finished = run_batch(todo, at, at + 1, text, options);
  } catch (...) {
    std::swap(engine_impl_, engine);
    throw;
  }
  std::swap(engine_impl_, engine);
  return finished;
}

void EditRunner::run_prompt(const std::vector<std::string>& prompts) {
  // A prompt-less run edits toward the engine's own prompt (a mapper's); else it is the global
  // engine's image pair, the one direction given without words. Several prompts are one
  // combined edit, "A + B".
  std::string text;
  for (const auto& p : prompts) text += (text.empty() ? "" : " + ") + p;
  if (text.empty()) text = engine_impl_->default_prompt();
  tag_ = slug(text.empty() ? std::string("image-pair") : text) + "." + run_.method;
  // What is left to do for this prompt: usable inputs whose sidecar is not there yet.
  std::vector<const InputItem*> todo;
  for (const auto& item : items_) {
    if (!item.error.empty()) continue;
    const auto base = output_base(item).string();
    bool clash = false;
    for (const char* ext : {".png", ".latent.pt", ".styles.pt", ".json", ".compare.png",
                            ".photo.png", ".photo-compare.jpg"}) {
      if (input_paths_.count(canonical_path(base + ext)) > 0) clash = true;
    }
    if (clash) {
      batch_->summary().failed(item.name, "its output '" + base +
                                              ".*' would replace an input file (choose another "
                                              "--out)");
      continue;
    }
    if (!batch_->finished(item.name, base + ".json")) todo.push_back(&item);
  }
  if (todo.empty()) return;
  json options = prompts.size() > 1 ? engine_impl_->prepare_combined(prompts, hooks())
                                    : engine_impl_->prepare(text, hooks());
  options["batch"] = run_.batch;
  options["device"] = device_.str();
  options["precision"] = to_string(precision_);
  if (transform_.any()) options.update(transform_.to_json());
  // W+ latents and style codes go through the engine in separate batches.
  std::stable_partition(todo.begin(), todo.end(),
                        [](const InputItem* item) { return item->styles.empty(); });
  // A latent or photo with its own tuned generator (invert --with pti) is edited alone, by an
  // engine made for that generator.
  const auto tuned = [](const InputItem* item) { return item->input.contains("pti_weights"); };
  const auto step = static_cast<size_t>(run_.batch);
  for (size_t start = 0; start < todo.size() && !batch_->stop_requested();) {
    if (tuned(todo[start])) {
      if (!run_tuned(todo, start, prompts, text, options)) batch_->stopped();
      ++start;
      continue;
    }
    size_t end = std::min(todo.size(), start + step);
    for (size_t i = start + 1; i < end; ++i) {
      if (todo[i]->styles.empty() != todo[start]->styles.empty() || tuned(todo[i])) {
        end = i;
        break;
      }
    }
    if (!run_batch(todo, start, end, text, options)) batch_->stopped();
    start = end;
  }
}

/// One batch: the engine's edit, then every output. Returns false when interrupted (the batch is
/// abandoned whole: nothing of it is written, and its frames are removed; a rerun redoes it).
bool EditRunner::run_batch(const std::vector<const InputItem*>& todo, size_t start, size_t end,
                           const std::string& prompt, const json& options) {
  const bool in_s = !todo[start]->styles.empty();
  std::vector<torch::Tensor> rows;
  std::vector<torch::Tensor> styles;
  torch::Tensor ws;
  if (in_s) {
    for (size_t l = 0; l < todo[start]->styles.size(); ++l) {
      rows.clear();
      for (size_t i = start; i < end; ++i) rows.push_back(todo[i]->styles[l]);
      styles.push_back(torch::cat(rows, 0));
    }
  } else {
    for (size_t i = start; i < end; ++i) rows.push_back(todo[i]->ws);
    ws = torch::cat(rows, 0);
  }
  const auto names = batch_names(todo, start, end);
  frames_.assign(end - start, {});
  auto h = hooks();
  std::optional<Progress> progress;
  const auto t0 = std::chrono::steady_clock::now();
  h.progress = [&](int done, int total, double loss) {
    if (!progress) {  // the total is known at the first report; the clock started before it
      const double before =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.emplace(run_.method + " " + names, total, before);
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "loss %.4f", loss);
    progress->update(done, buf);
  };
  h.frame = [&](int step, const torch::Tensor& images) {
    for (size_t i = start; i < end; ++i) {
      const auto dir = fs::path(output_base(*todo[i]).string() + ".frames");
      ensure_output_dir(dir);
      char file[32];
      std::snprintf(file, sizeof file, "%05d.png", step);
      write_image(dir / file, images[static_cast<int64_t>(i - start)]);
      frames_[i - start].push_back(dir / file);
    }
  };
  // Out of memory on a batch: name the inputs and the way out (exit 5); outputs already written
  // stay, and a rerun with a smaller --batch skips them.
  const auto out_of_memory = [&](const std::string& detail) {
    return device_error("out of memory editing " + names + " (" + std::to_string(end - start) +
                        " inputs per batch): use a smaller --batch (" + detail + ")");
  };
  EditResult r;
  std::vector<json> extra(end - start, json::object());
  try {
    r = in_s ? engine_impl_->edit_styles(styles, h) : engine_impl_->edit(ws, h);
    if (!r.stopped && !in_s) {  // sweeps vary the edit of W+ inputs
      json sweeps = json::object();
      write_sweeps(todo, start, ws, sweeps);
      for (size_t i = 0; i < extra.size(); ++i)
        extra[i] = sweeps.value(std::to_string(i), json::object());
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
  if (progress) progress->finish();
  if (r.stopped) {
    for (size_t i = start; i < end; ++i) {  // only the frames this run wrote for the batch
      if (frames_[i - start].empty()) continue;
      std::error_code ec;
      fs::remove_all(output_base(*todo[i]).string() + ".frames", ec);
    }
    return false;
  }
  // Frame sequences end with the final image, then become a video where OpenCV can encode MP4.
  for (size_t i = start; i < end; ++i) {
    auto& frames = frames_[i - start];
    if (frames.empty()) continue;
    const auto base = output_base(*todo[i]).string();
    const auto dir = fs::path(base + ".frames");
    write_image(dir / "final.png", r.after[static_cast<int64_t>(i - start)]);
    frames.push_back(dir / "final.png");
    auto& out = extra[i - start];
    out["frames"] = dir.filename().string();
    if (const auto video = write_frames_video(base, frames)) out["video"] = *video;
  }
  // The batch is computed: write it whole (a signal now waits for the writes).
  for (size_t i = start; i < end; ++i) {
    write_item(*todo[i], prompt, options, r, static_cast<int64_t>(i - start), extra[i - start]);
  }
  return true;
}

/// Sweeps: a grid per input so the user sees the effect instead of guessing (and an MP4 over a
/// smooth parameter). Records each row's files in `extra["<row>"]`.
void EditRunner::write_sweeps(const std::vector<const InputItem*>& todo, size_t start,
                              const torch::Tensor& ws, json& extra) {
  for (const auto& sweep : engine_impl_->sweeps(ws)) {
    for (int64_t k = 0; k < ws.size(0); ++k) {
      const auto base =
          output_base(*todo[start + static_cast<size_t>(k)]).string() + "." + sweep.name + "-sweep";
      auto& out = extra[std::to_string(k)];
      std::vector<torch::Tensor> row;
      for (const auto& img : sweep.images) row.push_back(img[k]);
      ensure_output_dir(fs::path(base).parent_path());
      write_image_row(base + ".png", row);
      out[sweep.name + "_sweep"] = fs::path(base + ".png").filename().string();
      if (!sweep.video) continue;
      std::vector<fs::path> frames;
      ensure_output_dir(base + ".frames");
      for (size_t i = 0; i < row.size(); ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "%05zu.png", i);
        frames.push_back(fs::path(base + ".frames") / name);
        write_image(frames.back(), row[i]);
      }
      if (const auto video = write_frames_video(base, frames)) {
        out[sweep.name + "_sweep_video"] = *video;
      }
    }
  }
}

/// Writes one item's outputs (every file atomically; the sidecar last, so that its presence
/// marks a complete item) and records it in the summary.
void EditRunner::write_item(const InputItem& item, const std::string& prompt, const json& options,
                            const EditResult& r, int64_t k, json outputs) {
  const auto base_path = output_base(item);
  const auto base = base_path.string();
  ensure_output_dir(base_path.parent_path());
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
  if (run_.compare) {
    // A photo's pair starts with the aligned crop itself, so the reconstruction's fidelity shows.
    if (photo != nullptr) {
      write_image_row(base + ".compare.png",
                      {to_generator_range(photo->crop), r.before[k], r.after[k]});
    } else {
      write_image_row(base + ".compare.png", {r.before[k], r.after[k]});
    }
    outputs["compare"] = fs::path(base + ".compare.png").filename().string();
  }
  fs::path shown = base + ".png";
  if (photo != nullptr && run_.paste_back && photo->alignment) {
    // The user's whole photo back, with the edited face warped into place (face_align.h).
    const auto pixels = read_image_rgb(photo->path, run_.photo.max_pixels);
    if (pixels.size(0) != photo->height || pixels.size(1) != photo->width) {
      throw input_error("photo '" + photo->path.string() +
                        "' changed while it was being edited (run the edit again)");
    }
    const auto pasted = paste_back(pixels, to_uint8_hwc(r.after[k]), *photo->alignment);
    write_image(base + ".photo.png", to_generator_range(pasted));
    outputs["photo"] = fs::path(base + ".photo.png").filename().string();
    shown = base + ".photo.png";
    if (run_.compare) {
      // A preview to look at (JPEG, at most 1024 px high): the photo itself is .photo.png.
      write_image_row(base + ".photo-compare.jpg", {to_generator_range(fit_height(pixels, 1024)),
                                                    to_generator_range(fit_height(pasted, 1024))});
      outputs["photo_compare"] = fs::path(base + ".photo-compare.jpg").filename().string();
    }
  }
  const auto& error = r.errors[static_cast<size_t>(k)];
  json side = header_;
  side["engine"] = run_.method;
  side["prompt"] = prompt;
  side["input"] = item.input;
  if (photo != nullptr) {
    side["input"].update(photo->to_json());
    side["input"]["paste_back"] = run_.paste_back && photo->alignment.has_value();
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
    batch_->summary().done({{"name", item.name},
                            {"prompt", prompt},
                            {"status", side["status"]},
                            {"image", base + ".png"},
                            {"metrics", side["metrics"]}});
  } else {
    spdlog::error("{}: {}", item.name, error);
    batch_->summary().failed(item.name + " (" + prompt + ")", error);
  }
  if (run_.on_output) run_.on_output(shown);
}

}  // namespace

EditReport run_edit(const EditRun& run) {
  EditRunner runner(run);
  return runner.go();
}

}  // namespace styleclip
