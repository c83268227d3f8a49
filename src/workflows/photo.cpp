#include <styleclip/workflows/photo.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/losses/losses.h>
#include <styleclip/runtime.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>

#include <spdlog/spdlog.h>

#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace fs = std::filesystem;
using nlohmann::json;

bool is_photo_path(const fs::path& path) {
  auto ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* e : {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}) {
    if (ext == e) return true;
  }
  return false;
}

json PhotoFace::to_json() const {
  json j = {{"photo", fs::absolute(path).lexically_normal().string()},
            {"size", {width, height}},
            {"faces_found", faces_found},
            {"detection", detection}};
  j["inversion"] = {
      {"method", method},
      {"latent", latent_file.string()},
      {"pti_weights", pti_weights.empty() ? json(nullptr) : json(pti_weights.string())},
      {"sidecar", sidecar_file.string()},
      {"cached", cached},
      {"psnr", psnr},
      {"identity_similarity", identity ? json(*identity) : json(nullptr)}};
  return j;
}

PhotoInverter::PhotoInverter(const Bundle& bundle, const fs::path& models, const Generator& gen,
                             const Clip* clip, const IdentityModel* identity,
                             const PhotoOptions& options, fs::path out_dir)
    : bundle_(bundle),
      models_(models),
      gen_(gen),
      clip_(clip),
      identity_(identity),
      options_(options),
      out_dir_(std::move(out_dir)) {
  validate(options_.engine);
  const bool has_encoder = bundle.has("encoder");
  if (options_.with == "encoder" && !has_encoder) {
    throw usage_error("--with encoder: the bundle '" + models.string() +
                      "' has no encoder (add e4e with scripts/export_bundle.py --encoder "
                      "e4e_ffhq_encode.pt, or use --with optimize)");
  }
  if (has_encoder) encoder_ = std::make_unique<Encoder>(bundle, gen.device());
  method_ = method_for(bundle, options_);
  if (uses_lpips(bundle, options_)) lpips_ = std::make_unique<Lpips>(bundle, gen.device());
  if (needs_clip(bundle, options_) && clip == nullptr) {
    throw usage_error(
        "the projector's CLIP term needs the bundle's CLIP model (or --clip-lambda 0)");
  }
  if (options_.aligned) return;
  if (!options_.detector.empty()) {
    detector_ = std::make_unique<FaceDetector>(options_.detector);
  } else if (bundle.has("face_detector")) {
    detector_ = std::make_unique<FaceDetector>(bundle.file("face_detector"));
  } else {
    spdlog::warn(
        "no face detector (--face-detector FILE, or the bundle's face_detector.onnx): photos are "
        "taken as aligned face crops (--aligned says so and silences this)");
  }
}

PhotoInverter::~PhotoInverter() = default;

std::vector<fs::path> PhotoInverter::cache_files(const std::string& name) const {
  return {out_dir_ / (name + ".latent.pt"), out_dir_ / (name + ".invert.json"),
          out_dir_ / (name + ".target.png"), out_dir_ / (name + ".inverted.png"),
          out_dir_ / (name + ".pti.pt")};
}

std::string PhotoInverter::method_for(const Bundle& bundle, const PhotoOptions& o) {
  const bool encoder = bundle.has("encoder");
  if (o.with == "pti") return encoder ? "encoder+optimize+pti" : "optimize+pti";
  if (o.with == "optimize") return encoder ? "encoder+optimize" : "optimize";
  return encoder ? "encoder" : "optimize";
}

bool PhotoInverter::uses_lpips(const Bundle& bundle, const PhotoOptions& o) {
  return method_for(bundle, o) != "encoder" && bundle.has("lpips") && o.engine.lpips_lambda > 0;
}

bool PhotoInverter::needs_clip(const Bundle& bundle, const PhotoOptions& o) {
  return method_for(bundle, o) != "encoder" && !uses_lpips(bundle, o) && o.engine.clip_lambda > 0;
}

std::string PhotoInverter::perceptual() const {
  if (lpips_) return "lpips";
  return options_.engine.clip_lambda > 0 ? "clip" : "none";
}

PhotoFace PhotoInverter::locate(const fs::path& photo, const std::string& name) const {
  PhotoFace face;
  face.path = photo;
  face.name = name.empty() ? photo.stem().string() : name;
  const auto pixels = read_image_rgb(photo, options_.max_pixels);
  face.height = pixels.size(0);
  face.width = pixels.size(1);
  const int res = bundle_.generator().resolution;
  if (detector_) {
    const auto faces = detector_->detect(pixels);
    if (faces.empty()) {
      throw input_error("no face found in '" + photo.string() +
                        "' (give a photo with a face seen from the front, or an aligned face crop "
                        "with --aligned)");
    }
    face.faces_found = static_cast<int>(faces.size());
    if (faces.size() > 1) {
      spdlog::info("'{}': {} faces, using the largest (styleclip align --all-faces crops each)",
                   photo.string(), faces.size());
    }
    face.alignment = ffhq_alignment(faces.front().landmarks, res);
    face.crop = align_face(pixels, *face.alignment);
    face.detection = {{"face", faces.front().to_json()}, {"alignment", face.alignment->to_json()}};
  } else {
    face.crop = resize_square(pixels, res);
  }
  return face;
}

namespace {

/// Fills `face` from an earlier inversion when its sidecar's cache key is `key`; false when there
/// is none (an unreadable or partial cache is no cache: the photo is inverted again).
/// A step callback that shows the loss on `progress`, and on Ctrl-C in a batch run (batch.h)
/// abandons this photo: nothing of it is written.
/// `hook` (PhotoInverter::set_step_hook) sees every step too, as `stage`.
std::function<void(int, int, double)> abandonable_progress(
    Progress& progress, const std::string& stage,
    const std::function<void(const std::string&, int, int, double)>& hook) {
  return [&progress, stage, &hook](int done, int total, double loss) {
    if (InterruptGuard::interrupted()) throw Error(ExitCode::kInterrupted, "interrupted");
    if (hook) hook(stage, done, total, loss);
    char buf[32];
    std::snprintf(buf, sizeof buf, "loss %.4f", loss);
    progress.update(done, buf);
  };
}

bool read_cache(PhotoFace& face, const json& key, const GeneratorInfo& g) {
  if (!fs::exists(face.latent_file) || !fs::exists(face.sidecar_file)) return false;
  try {
    std::ifstream f(face.sidecar_file);
    const auto side = json::parse(f);
    if (side.value("cache_key", json()) != key) return false;
    const auto pti = side.at("outputs").value("pti_weights", std::string());
    if (!pti.empty()) {
      const auto weights = face.sidecar_file.parent_path() / pti;
      if (!fs::exists(weights) ||
          sha256_file(weights) != side.at("outputs").value("pti_weights_sha256", "")) {
        return false;
      }
      face.pti_weights = weights;
    }
    face.ws = load_latents(face.latent_file, g.num_ws, g.w_dim);
    face.psnr = side.at("metrics").value("psnr", 0.0);
    const auto id = side.at("metrics").value("identity_similarity", json());
    if (id.is_number()) face.identity = id.get<double>();
    face.cached = true;
    spdlog::info(
        "'{}': inverted before with the same image, generator and options (cached in '{}')",
        face.path.string(), face.sidecar_file.string());
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

json PhotoInverter::tune_generator(PhotoFace& face, const torch::Tensor& target,
                                   InvertResult& r) const {
  if (!lpips_) {
    spdlog::warn("'{}': the bundle has no LPIPS model: pivotal tuning matches pixels only (L2)",
                 face.path.string());
  }
  json pivot = {{"psnr_pivot", r.psnr_after[0]}};
  if (identity_ != nullptr) {
    torch::NoGradGuard no_grad;
    pivot["identity_similarity_pivot"] =
        IdentityLoss(*identity_, target).similarity(r.images)[0].item<double>();
  }
  Progress progress("tune " + face.name, options_.pti.steps);
  const auto t = pivotal_tuning(gen_, lpips_.get(), target, r.ws, options_.pti,
                                abandonable_progress(progress, "tune", step_hook_));
  progress.finish();
  face.pti_weights = cache_files(face.name)[4];
  ensure_output_dir(face.pti_weights.parent_path());
  save_weights(face.pti_weights, t.weights);
  r.images = t.image_tuned;  // the reconstruction is the tuned generator's
  face.psnr = t.psnr_tuned;
  pivot.update({{"psnr", t.psnr_tuned},
                {"lpips_pivot", t.lpips_pivot >= 0 ? json(t.lpips_pivot) : json(nullptr)},
                {"lpips", t.lpips_tuned >= 0 ? json(t.lpips_tuned) : json(nullptr)},
                {"tensors", t.weights.size()},
                {"final_loss", t.final_loss},
                {"seconds", t.seconds}});
  spdlog::info("'{}': generator tuned around its pivot: PSNR {:.2f} dB (pivot {:.2f}) in {:.3g} s",
               face.path.string(), t.psnr_tuned, t.psnr_pivot, t.seconds);
  return pivot;
}

void PhotoInverter::invert(PhotoFace& face) const {
  const auto files = cache_files(face.name);
  face.latent_file = files[0];
  face.sidecar_file = files[1];
  const auto checksums = bundle_.checksums();
  face.method = method_;
  const bool optimise = method_ != "encoder";
  json key = {{"image_sha256", sha256_file(face.path)},
              {"generator_sha256", checksums.value("generator", "")},
              {"aligned_input", !face.alignment.has_value()},
              {"method", method_}};
  if (encoder_) key["encoder_sha256"] = checksums.value("encoder", "");
  const bool tune = method_.size() > 4 && method_.compare(method_.size() - 4, 4, "+pti") == 0;
  if (optimise) {
    key["options"] = options_.engine.to_json();
    if (tune) key["options"].update(options_.pti.to_json());
    key["perceptual"] = perceptual();
    if (lpips_) key["lpips_sha256"] = checksums.value("lpips", "");
  }
  if (!options_.overwrite && read_cache(face, key, bundle_.generator())) return;
  const auto target = to_generator_range(face.crop).unsqueeze(0).to(gen_.device());
  InvertResult r;
  torch::Tensor start;
  double encode_ms = 0;
  if (encoder_) {
    torch::NoGradGuard no_grad;
    const auto t0 = std::chrono::steady_clock::now();
    start = encoder_->encode(target);
    synchronize_device(gen_.device());
    encode_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  if (optimise) {
    Progress progress("invert " + face.name, options_.engine.steps);
    r = styleclip::invert(gen_, clip_, lpips_.get(), target, start, options_.engine,
                          abandonable_progress(progress, "invert", step_hook_));
    progress.finish();
  } else {
    // The encoder's answer as it is (e4e alone: one forward pass).
    torch::NoGradGuard no_grad;
    const PrecisionScope scope(options_.engine.precision, gen_.device());
    r.ws = start;
    r.images = gen_.synthesis(start);
    r.psnr_after = {psnr(r.images, target)[0].item<double>()};  // no start: psnr_before empty
    r.seconds = encode_ms / 1000.0;
  }
  face.ws = r.ws.detach().cpu();
  face.psnr = r.psnr_after[0];
  json tuning = nullptr;
  if (tune) tuning = tune_generator(face, target, r);
  if (identity_ != nullptr) {
    torch::NoGradGuard no_grad;
    face.identity = IdentityLoss(*identity_, target).similarity(r.images)[0].item<double>();
  }
  ensure_output_dir(face.latent_file.parent_path());
  const fs::path& target_png = files[2];
  const fs::path& recon_png = files[3];
  write_image(target_png, target[0]);
  write_image(recon_png, r.images[0]);
  save_tensor_pt(face.latent_file, face.ws);
  json side = sidecar_header("invert", models_, checksums);
  side["input"] = {{"image", fs::absolute(face.path).string()},
                   {"align", face.detection},
                   {"faces_found", face.faces_found}};
  side["options"] = optimise ? options_.engine.to_json() : json::object();
  side["options"]["device"] = gen_.device().str();
  side["method"] = method_;
  if (optimise) side["options"]["perceptual"] = perceptual();
  side["metrics"] = {
      {"psnr_start", r.psnr_before.empty() ? json(nullptr) : json(r.psnr_before[0])},
      {"psnr", face.psnr},
      {"identity_similarity", face.identity ? json(*face.identity) : json(nullptr)},
      {"final_loss", r.loss_history.empty() ? json(nullptr) : json(r.loss_history.back())}};
  side["timing"] = {{"seconds", r.seconds}};
  if (encoder_) side["timing"]["encoder_ms"] = encode_ms;
  side["outputs"] = {{"latent", face.latent_file.filename().string()},
                     {"target", target_png.filename().string()},
                     {"reconstruction", recon_png.filename().string()}};
  if (tune) {
    if (identity_ != nullptr) tuning["identity_similarity"] = *face.identity;
    side["metrics"]["pti"] = tuning;
    side["options"].update(options_.pti.to_json());
    side["timing"]["pti_seconds"] = tuning["seconds"];
    side["outputs"]["pti_weights"] = face.pti_weights.filename().string();
    side["outputs"]["pti_weights_sha256"] = sha256_file(face.pti_weights);
  }
  side["cache_key"] = key;
  write_json(face.sidecar_file, side);  // last: marks the cache as complete
  if (r.psnr_before.empty()) {
    spdlog::info("'{}': inverted ({}), PSNR {:.2f} dB in {:.3g} s", face.path.string(), method_,
                 r.psnr_after[0], r.seconds);
  } else {
    spdlog::info("'{}': inverted ({}), PSNR {:.2f} dB (from {:.2f} at its start) in {:.3g} s",
                 face.path.string(), method_, r.psnr_after[0], r.psnr_before[0], r.seconds);
  }
}

}  // namespace styleclip
