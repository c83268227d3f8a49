// `styleclip info` — what a model bundle holds, as text or JSON.
#include <styleclip/models/bundle.h>

#include <iostream>

#include "common.h"

namespace styleclip::cli {
namespace {

struct InfoOptions {
  std::string models;
  bool json = false;
  bool no_verify = false;
};

int run_info(const InfoOptions& o) {
  const auto dir = resolve_models(o.models);
  const auto bundle = Bundle::open(dir, o.no_verify ? Bundle::Verify::kNone : Bundle::Verify::kAll);
  if (o.json) {
    auto out = bundle.manifest();
    out["dir"] = dir.string();
    out["checksums_verified"] = !o.no_verify;
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "bundle    " << dir.string() << "\n";
  if (bundle.has("generator")) {
    const auto& g = bundle.generator();
    int total = 0;
    int non_rgb = 0;
    for (size_t i = 0; i < g.style_dims.size(); ++i) {
      total += g.style_dims[i];
      if (!g.style_is_rgb[i]) non_rgb += g.style_dims[i];
    }
    std::cout << "generator StyleGAN2 " << g.resolution << "x" << g.resolution << ", w_dim "
              << g.w_dim << ", z_dim " << g.z_dim << ", " << g.num_ws << " W+ rows, mapping depth "
              << g.n_mlp << "\n          style space: " << g.style_dims.size() << " layers, "
              << total << " channels (" << non_rgb << " outside toRGB)\n";
    if (g.c_dim > 0) {
      std::cout << "          conditional: " << g.c_dim << " classes (--class 0-" << g.c_dim - 1
                << ")\n";
    }
    if (g.seed_convention == SeedConvention::kNumpyRandomState) {
      std::cout << "          seeds: z as numpy's RandomState draws it (NVIDIA's generate.py)\n";
    }
  }
  if (bundle.has("clip")) {
    const auto& c = bundle.clip();
    std::cout << "clip      " << c.image_resolution << " px images, " << c.embed_dim
              << "-d embeddings, context " << c.context_length << ", vocabulary " << c.vocab_size
              << "\n";
  }
  std::cout << "files" << (o.no_verify ? " (checksums not verified)" : " (checksums verified)")
            << "\n";
  for (const auto& part : bundle.parts()) {
    const auto& e = bundle.manifest().at("files").at(part);
    std::cout << "  " << part << ": " << e.at("path").get<std::string>() << "  "
              << e.at("bytes").get<int64_t>() << " bytes  sha256 "
              << e.at("sha256").get<std::string>() << "\n";
  }
  return 0;
}

}  // namespace

void setup_info(CLI::App& app, Registry& reg) {
  auto opts = std::make_shared<InfoOptions>();
  auto* sub = app.add_subcommand("info", "show what a model bundle holds");
  add_models_option(*sub, opts->models);
  sub->add_flag("--json", opts->json, "print the manifest as JSON on stdout");
  sub->add_flag("--no-verify", opts->no_verify, "skip recomputing the files' sha256");
  reg.push_back({sub, [opts] { return run_info(*opts); }});
}

}  // namespace styleclip::cli
