// `styleclip invert` — the W+ code of each photo's face (issue #7): align (when a face detector
// is at hand and the input is not already an aligned crop), then the optimisation projector
// (engines/invert). The result is cached beside the outputs, keyed by the image's checksum, the
// generator's checksum and the options: inverting the same photo again is skipped.
#include <styleclip/engines/invert.h>
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/models/bundle.h>
#include <styleclip/runtime.h>

#include <fstream>
#include <iostream>
#include <optional>

#include <spdlog/spdlog.h>

#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct InvertCliOptions {
  std::string models;
  std::string out;
  std::string detector;
  std::string device = "auto";
  std::string precision = "auto";
  bool aligned = false;
  bool overwrite = false;
  InvertOptions engine;
  std::vector<std::string> images;
};

int run_invert(InvertCliOptions o) {
  validate(o.engine);
  const auto device = parse_device(o.device);
  o.engine.precision = parse_precision(o.precision, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  const int res = bundle.generator().resolution;
  std::optional<FaceDetector> detector;
  if (!o.aligned) {
    if (!o.detector.empty()) {
      detector.emplace(o.detector);
    } else if (bundle.has("face_detector")) {
      detector.emplace(bundle.file("face_detector"));
    } else {
      spdlog::info(
          "no face detector (--face-detector or the bundle's): inputs are taken as aligned "
          "crops");
    }
  }
  // Read every image first: a bad file fails before anything is loaded or written.
  std::vector<torch::Tensor> pixels;
  for (const auto& p : o.images) pixels.push_back(read_image_rgb(p));

  const Generator gen(bundle, device);
  std::optional<Clip> clip;
  if (o.engine.clip_lambda > 0) clip.emplace(bundle, device);
  const auto checksums = bundle.checksums();
  ensure_output_dir(o.out);
  int failed = 0;
  for (size_t i = 0; i < o.images.size(); ++i) {
    const fs::path input = o.images[i];
    const std::string stem = input.stem().string();
    const fs::path latent = fs::path(o.out) / (stem + ".latent.pt");
    const fs::path side_path = fs::path(o.out) / (stem + ".invert.json");
    const json key = {{"image_sha256", sha256_file(input)},
                      {"generator_sha256", checksums.value("generator", "")},
                      {"aligned_input", !detector.has_value()},
                      {"options", o.engine.to_json()}};
    if (!o.overwrite && fs::exists(latent) && fs::exists(side_path)) {
      try {
        std::ifstream f(side_path);
        if (json::parse(f).value("cache_key", json()) == key) {
          spdlog::info(
              "'{}': inverted before with the same image, generator and options (cached; "
              "--overwrite to redo)",
              input.string());
          std::cout << latent.string() << "\n";
          continue;
        }
      } catch (const std::exception&) {
        // An unreadable sidecar is no cache: invert again.
      }
    }
    torch::Tensor crop;
    json align_info = nullptr;
    if (detector) {
      const auto faces = detector->detect(pixels[i]);
      if (faces.empty()) {
        const std::string why = "no face found in '" + input.string() + "'";
        if (o.images.size() == 1) throw input_error(why);
        spdlog::error("{}", why);
        ++failed;
        continue;
      }
      const auto a = ffhq_alignment(faces.front().landmarks, res);
      crop = align_face(pixels[i], a);
      align_info = {{"face", faces.front().to_json()}, {"alignment", a.to_json()}};
    } else {
      crop = resize_square(pixels[i], res);
    }
    const auto target = to_generator_range(crop).unsqueeze(0);
    Progress progress("invert " + stem, o.engine.steps);
    const auto r = invert(gen, clip ? &*clip : nullptr, target, torch::Tensor(), o.engine,
                          [&](int done, int, double loss) {
                            char buf[32];
                            std::snprintf(buf, sizeof buf, "loss %.4f", loss);
                            progress.update(done, buf);
                          });
    progress.finish();
    const fs::path target_png = fs::path(o.out) / (stem + ".target.png");
    const fs::path recon_png = fs::path(o.out) / (stem + ".inverted.png");
    write_image(target_png, target[0]);
    write_image(recon_png, r.images[0]);
    save_tensor_pt(latent, r.ws.cpu());
    json side = sidecar_header("invert", models, checksums);
    side["input"] = {{"image", fs::absolute(input).string()}, {"align", align_info}};
    side["options"] = o.engine.to_json();
    side["options"]["device"] = device.str();
    side["method"] = "optimize";
    side["metrics"] = {{"psnr_start", r.psnr_before[0]},
                       {"psnr", r.psnr_after[0]},
                       {"final_loss", r.loss_history.empty() ? 0.0 : r.loss_history.back()}};
    side["timing"] = {{"seconds", r.seconds}};
    side["outputs"] = {{"latent", latent.filename().string()},
                       {"target", target_png.filename().string()},
                       {"reconstruction", recon_png.filename().string()}};
    side["cache_key"] = key;
    write_json(side_path, side);  // last: marks the item as done
    spdlog::info("'{}': PSNR {:.2f} dB (from {:.2f} at w_avg) in {:.1f} s", input.string(),
                 r.psnr_after[0], r.psnr_before[0], r.seconds);
    std::cout << latent.string() << "\n";
  }
  if (failed == 0) return 0;
  if (failed == static_cast<int>(o.images.size())) {
    throw input_error("no face found in any of the " + std::to_string(failed) + " images");
  }
  return static_cast<int>(ExitCode::kSomeInputsFailed);
}

}  // namespace

void setup_invert(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<InvertCliOptions>();
  auto* sub = app.add_subcommand(
      "invert", "find the W+ latent of each photo's face (align, then an optimisation projector)");
  add_models_option(*sub, o->models);
  sub->add_option("images", o->images, "photos, or aligned crops with --aligned")->required();
  sub->add_option("--out", o->out, "output folder")->required();
  sub->add_option("--face-detector", o->detector,
                  "YuNet model for photos (default: the bundle's face_detector.onnx)");
  sub->add_flag("--aligned", o->aligned, "inputs are aligned crops already: no detection");
  sub->add_option("--steps", o->engine.steps, "projector steps")->capture_default_str();
  sub->add_option("--lr", o->engine.lr, "peak learning rate")->capture_default_str();
  sub->add_option("--pixel-lambda", o->engine.pixel_lambda, "weight of the pixel MSE")
      ->capture_default_str();
  sub->add_option("--clip-lambda", o->engine.clip_lambda,
                  "weight of the CLIP image-feature distance (the perceptual term; 0: off)")
      ->capture_default_str();
  sub->add_flag("--overwrite", o->overwrite, "invert again even when a cached result exists");
  add_device_options(*sub, o->device, o->precision);
  reg.push_back({sub, [o] { return run_invert(*o); }});
}

}  // namespace styleclip::cli
