// `run_generate` (generate.h): seeds and latent files through the generator, in batches, into
// images, latents and sidecars.
#include <styleclip/workflows/generate.h>

#include <algorithm>
#include <vector>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/generator.h>
#include <styleclip/runtime.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// Writes one rendered item: image, latent, styles when asked, and the sidecar last.
json write_generated(const GenerateRun& run, const InputItem& item, const json& sidecar_base,
                     const torch::Tensor& image, const torch::Tensor& ws,
                     const std::vector<torch::Tensor>& styles) {
  const fs::path base = run.out / item.name;
  ensure_output_dir(base.parent_path());
  const fs::path png = base.string() + ".png";
  const fs::path latent = base.string() + ".latent.pt";
  write_image(png, image);
  save_tensor_pt(latent, ws);
  json sidecar = sidecar_base;
  sidecar["input"] = item.input;
  sidecar["outputs"] = {{"image", png.filename().string()}, {"latent", latent.filename().string()}};
  if (!styles.empty()) {
    const fs::path sp = base.string() + ".styles.pt";
    save_tensors_pt(sp, styles);
    sidecar["outputs"]["styles"] = sp.filename().string();
  }
  write_json(base.string() + ".json", sidecar);
  return {{"name", item.name}, {"image", png.string()}, {"latent", latent.string()}};
}

}  // namespace

BatchReport run_generate(const GenerateRun& run) {
  if (run.seeds.empty() && run.inputs.paths.empty()) {
    throw usage_error("nothing to generate: give --seed N[-M] or --latent FILE (files or folders)");
  }
  // What a library caller can get wrong (the CLI checks these ranges itself).
  if (run.batch < 1 || run.batch > 4096) throw usage_error("invalid --batch: must be 1 to 4096");
  if (!(run.truncation >= 0.0 && run.truncation <= 2.0))
    throw usage_error("invalid --truncation: must be a number in [0, 2]");
  const auto seeds = run.seeds.empty() ? std::vector<uint64_t>{} : parse_seeds(run.seeds);
  BatchRun batch("generate", run.inputs.shard, run.inputs.overwrite);
  const auto device = parse_device(run.device);
  const auto precision = parse_precision(run.precision, device);
  const auto bundle = Bundle::open(run.models);
  const auto& info = bundle.generator();
  check_seeds(seeds, info, run.models);
  const auto class_index = check_class(run.class_index, info, run.models, !seeds.empty(), "--seed");
  const auto transform = check_input_transform(run.translate, run.rotate, info);
  // Read every latent before loading the model or writing anything: a bad file alone fails fast.
  const auto files =
      load_latent_files(expand_inputs(run.inputs.paths, run.inputs.recursive, run.inputs.globs),
                        info.num_ws, info.w_dim);
  require_some_readable(files, !seeds.empty());
  Generator gen(bundle, device);
  apply_input_transform(gen, transform);
  spdlog::info("generator {}x{} on {}", info.resolution, info.resolution, device.str());
  torch::NoGradGuard no_grad;
  auto all = collect_inputs(gen, seeds, run.truncation, class_index, files);
  mark_name_clashes(all);
  const auto [first, last] = batch.take(all.size());
  ensure_output_dir(run.out);
  json header = sidecar_header("generate", run.models, bundle.checksums());
  header["options"] = {{"randomize_noise", run.random_noise},
                       {"device", device.str()},
                       {"precision", to_string(precision)}};
  if (transform.any()) header["options"].update(transform.to_json());
  // This shard's inputs that still need doing.
  std::vector<const InputItem*> todo;
  for (size_t i = first; i < last; ++i) {
    const auto& item = all[i];
    if (!item.error.empty()) {
      batch.summary().failed(item.name, item.error);
    } else if (!batch.finished(item.name, run.out / (item.name + ".json"))) {
      todo.push_back(&item);
    }
  }
  batch.start();
  const auto step = static_cast<size_t>(run.batch);
  for (size_t start = 0; start < todo.size() && !batch.stop_requested(); start += step) {
    const size_t end = std::min(todo.size(), start + step);
    std::vector<torch::Tensor> rows;
    for (size_t i = start; i < end; ++i) rows.push_back(todo[i]->ws);
    const auto ws = torch::cat(rows, 0);
    const auto styles = gen.styles(ws);
    torch::Tensor images;
    {
      const PrecisionScope scope(precision, device);
      images = gen.synthesis_from_styles(styles, run.random_noise);
    }
    for (size_t i = start; i < end; ++i) {
      const auto k = static_cast<int64_t>(i - start);
      std::vector<torch::Tensor> s;
      if (run.save_styles) {
        for (const auto& layer : styles) s.push_back(layer.slice(0, k, k + 1));
      }
      const auto row = write_generated(run, *todo[i], header, images[k], ws.slice(0, k, k + 1), s);
      batch.summary().done(row);
      if (run.on_output) run.on_output(row["image"].get<std::string>());
    }
    spdlog::info("generated {}/{}", end, todo.size());
  }
  return batch.finish(last - first);
}

}  // namespace styleclip
