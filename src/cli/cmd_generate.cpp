// `styleclip generate` — images (and their W+ latents) from seeds or latent files.
#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/generator.h>
#include <styleclip/runtime.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include <styleclip/workflows/inputs.h>
#include "common.h"

namespace styleclip::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct GenerateOptions {
  std::string models;
  std::string seeds;
  std::vector<std::string> latents;
  double truncation = 0.7;
  std::optional<int64_t> class_index;
  std::string out;
  bool save_styles = false;
  bool random_noise = false;
  std::string device = "auto";
  std::string precision = "auto";
  int batch = 8;
  bool json = false;
};

int run_generate(const GenerateOptions& o) {
  if (o.seeds.empty() && o.latents.empty()) {
    throw usage_error("nothing to generate: give --seed N[-M] or --latent FILE");
  }
  const auto seeds = o.seeds.empty() ? std::vector<uint64_t>{} : parse_seeds(o.seeds);
  const fs::path out_dir = o.out;
  const auto device = parse_device(o.device);
  const auto precision = parse_precision(o.precision, device);
  const auto models = resolve_models(o.models);
  const auto bundle = Bundle::open(models);
  // Read every latent before loading the model or writing anything: a bad file fails fast.
  const auto& info = bundle.generator();
  check_seeds(seeds, info, models);
  const auto class_index = check_class(o.class_index, info, models, !seeds.empty(), "--seed");
  std::vector<InputFile> files;
  for (const auto& f : o.latents) files.push_back({f, fs::path(f).stem().string()});
  const auto latent_files = load_latent_files(files, info.num_ws, info.w_dim);
  require_all_readable(latent_files);
  ensure_output_dir(out_dir);
  const Generator gen(bundle, device);
  spdlog::info("generator {}x{} on {}", info.resolution, info.resolution, device.str());

  torch::NoGradGuard no_grad;
  const auto items = collect_inputs(gen, seeds, o.truncation, class_index, latent_files);

  const auto header = sidecar_header("generate", models, bundle.checksums());
  json summary = json::array();
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t start = 0; start < items.size(); start += static_cast<size_t>(o.batch)) {
    const size_t end = std::min(items.size(), start + static_cast<size_t>(o.batch));
    std::vector<torch::Tensor> rows;
    for (size_t i = start; i < end; ++i) rows.push_back(items[i].ws);
    const auto ws = torch::cat(rows, 0);
    const auto styles = gen.styles(ws);
    torch::Tensor images;
    {
      const PrecisionScope scope(precision, device);
      images = gen.synthesis_from_styles(styles, o.random_noise);
    }
    for (size_t i = start; i < end; ++i) {
      const auto& item = items[i];
      const auto k = static_cast<int64_t>(i - start);
      const auto png = out_dir / (item.name + ".png");
      const auto latent = out_dir / (item.name + ".latent.pt");
      write_image(png, images[k]);
      save_tensor_pt(latent, ws.slice(0, k, k + 1));
      json sidecar = header;
      sidecar["input"] = item.input;
      sidecar["options"] = {{"randomize_noise", o.random_noise},
                            {"device", device.str()},
                            {"precision", to_string(precision)}};
      sidecar["outputs"] = {{"image", png.filename().string()},
                            {"latent", latent.filename().string()}};
      if (o.save_styles) {
        std::vector<torch::Tensor> s;
        for (const auto& layer : styles) s.push_back(layer.slice(0, k, k + 1));
        const auto sp = out_dir / (item.name + ".styles.pt");
        save_tensors_pt(sp, s);
        sidecar["outputs"]["styles"] = sp.filename().string();
      }
      write_json(out_dir / (item.name + ".json"), sidecar);
      summary.push_back(
          {{"name", item.name}, {"image", png.string()}, {"latent", latent.string()}});
      if (!o.json) std::cout << png.string() << "\n";
    }
    spdlog::info("generated {}/{}", end, items.size());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    std::cout << json{{"outputs", summary}, {"count", items.size()}, {"seconds", secs}}.dump(2)
              << "\n";
  }
  return 0;
}

}  // namespace

void setup_generate(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<GenerateOptions>();
  auto* sub = app.add_subcommand("generate", "render images from seeds or W+ latent files");
  add_models_option(*sub, o->models);
  sub->add_option("--seed", o->seeds, "seeds to sample: N, N-M or a list such as 1,4,9-11");
  sub->add_option("--latent", o->latents,
                  "latent files (.pt from torch.save, or .npy): [w_dim], [num_ws, w_dim] or "
                  "[N, num_ws, w_dim]");
  sub->add_option("--truncation", o->truncation,
                  "truncation psi toward w_avg for sampled seeds (1 = none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  add_class_option(*sub, o->class_index);
  sub->add_option("--out", o->out, "output folder")->required();
  sub->add_flag("--save-styles", o->save_styles,
                "also write <name>.styles.pt: the style-space tensors (a list, torch.load-able)");
  sub->add_flag("--random-noise", o->random_noise,
                "draw fresh per-pixel noise instead of the checkpoint's fixed noise");
  add_device_options(*sub, o->device, o->precision);
  sub->add_option("--batch", o->batch, "images per generator call")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_flag("--json", o->json, "print a JSON summary on stdout instead of image paths");
  reg.push_back({sub, [o] { return run_generate(*o); }});
}

}  // namespace styleclip::cli
