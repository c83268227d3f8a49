#include "common.h"

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/numpy_random.h>
#include <styleclip/workflows/photo.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <spdlog/spdlog.h>

namespace styleclip::cli {
namespace fs = std::filesystem;

void add_models_option(CLI::App& app, std::string& target) {
  app.add_option("--models", target,
                 "model bundle folder (default: $STYLECLIP_MODELS, else the bundled demo model)");
}

fs::path resolve_models(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("STYLECLIP_MODELS"); env != nullptr && *env != '\0') return env;
  const fs::path bundled = STYLECLIP_DEFAULT_MODELS;
  std::error_code ec;
  if (fs::exists(bundled / "manifest.json", ec)) return bundled;
  throw usage_error(
      "no model bundle given: use --models DIR or set STYLECLIP_MODELS (no bundled default "
      "model is installed at '" +
      bundled.string() + "')");
}

void require_finite_numbers(CLI::App& app) {
  const CLI::Validator finite(
      [](std::string& value) {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (end != value.c_str() && !std::isfinite(v)) {
          return std::string("must be a finite number, found '") + value + "'";
        }
        return std::string();  // anything else is the option's own type check to judge
      },
      "", "finite");
  for (auto* opt : app.get_options()) {
    if (opt->get_type_name().rfind("FLOAT", 0) == 0) opt->check(finite);  // "FLOAT:" + checks
  }
  for (auto* sub : app.get_subcommands({})) require_finite_numbers(*sub);
}

void add_class_option(CLI::App& app, std::optional<int64_t>& target) {
  app.add_option("--class", target,
                 "class of the sampled latents, for a conditional generator (0 to classes - 1; "
                 "styleclip info shows how many)")
      ->check(CLI::NonNegativeNumber);
}

void add_device_options(CLI::App& app, std::string& device, std::string& precision) {
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", precision,
                 "the models' arithmetic: auto (bf16 on CUDA, fp32 on the CPU), fp32, tf32, bf16 "
                 "or fp16 (CUDA); latents and losses stay fp32")
      ->capture_default_str();
}

void add_photo_options(CLI::App& app, PhotoOptions& o, const std::string& steps_flag, bool pti) {
  app.add_option("--face-detector", o.detector,
                 "YuNet model for photos (default: the bundle's face_detector.onnx)");
  app.add_flag("--aligned", o.aligned, "photos are aligned face crops already: no detection");
  app.add_option("--max-pixels", o.max_pixels,
                 "refuse photos with more pixels than this (decompression bombs)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  std::vector<std::string> methods = {"auto", "encoder", "optimize"};
  if (pti) methods.emplace_back("pti");
  app.add_option("--with", o.with,
                 std::string("inversion: encoder (the bundle's e4e, one forward pass), optimize "
                             "(the projector, from the encoder's answer when the bundle has one)") +
                     (pti ? ", pti (optimize, then the generator tuned around that pivot: "
                            "Pivotal Tuning Inversion)"
                          : "") +
                     " or auto (encoder if any)")
      ->capture_default_str()
      ->check(CLI::IsMember(methods));
  if (pti) {
    app.add_option("--pti-steps", o.pti.steps, "pti: tuning steps")
        ->capture_default_str()
        ->check(CLI::Range(1, 100000));
    app.add_option("--pti-lr", o.pti.lr, "pti: Adam's learning rate")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  }
  app.add_option(steps_flag, o.engine.steps, "inversion: projector steps")->capture_default_str();
  app.add_option("--invert-lr", o.engine.lr, "inversion: peak learning rate")
      ->capture_default_str();
  app.add_option("--pixel-lambda", o.engine.pixel_lambda, "inversion: weight of the pixel MSE")
      ->capture_default_str();
  app.add_option("--lpips-lambda", o.engine.lpips_lambda,
                 "inversion: weight of LPIPS, the perceptual term when the bundle has one")
      ->capture_default_str();
  app.add_option("--clip-lambda", o.engine.clip_lambda,
                 "inversion: weight of the CLIP image-feature distance (the perceptual term; 0: "
                 "off)")
      ->capture_default_str();
}

CLI::Validator one_of(std::vector<std::string> choices) {
  std::string expected;
  for (size_t i = 0; i < choices.size(); ++i) {
    expected += (i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ")) + choices[i];
  }
  return CLI::Validator(
      [choices, expected](std::string& value) {
        const auto lower = [](std::string s) {
          for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          return s;
        };
        for (const auto& c : choices) {
          if (lower(c) == lower(value)) {
            value = c;
            return std::string();
          }
        }
        return "expected " + expected + ", found '" + value + "'";
      },
      "{" + CLI::detail::join(choices, ",") + "}", "one of");
}

void add_folder_options(CLI::App& app, bool& recursive, std::vector<std::string>& globs,
                        std::string& shard) {
  app.add_flag("--recursive,-r", recursive, "look into sub-folders of folder inputs");
  app.add_option("--glob", globs, "file patterns taken from folders (repeatable)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  app.add_option("--shard", shard,
                 "K/N: take the K-th of N slices of the sorted inputs; auto: from Slurm "
                 "(SLURM_ARRAY_TASK_ID) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX)");
}

void add_transform_options(CLI::App& app, std::string& translate, double& rotate) {
  app.add_option("--translate", translate,
                 "StyleGAN3: shift the picture by X,Y (NVIDIA's gen_images.py units, e.g. 0.1,0)");
  app.add_option("--rotate", rotate, "StyleGAN3: turn the picture by this many degrees");
}

std::function<void(const std::filesystem::path&)> path_printer(bool json) {
  if (json) return nullptr;
  return [](const std::filesystem::path& p) { std::cout << p.string() << "\n"; };
}

int print_report(const BatchReport& report, bool json) {
  if (json) std::cout << report.summary.dump(2) << "\n";
  return report.exit_code;
}

}  // namespace styleclip::cli
