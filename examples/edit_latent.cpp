// styleclip as a library: open a model bundle, sample a latent, and edit it toward a prompt with
// every registered engine through the Engine interface (styleclip/engines/engine.h) — the public
// headers of styleclip::core alone, no files written.
//
//   edit_latent BUNDLE MAPPER "a red shape" "a shape"
//
// Prints each engine's CLIP similarity with the prompt before and after; exits 1 when an engine
// did not move the image toward the prompt.
#include <cstdio>
#include <exception>
#include <string>

#include <styleclip/engines/engine.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/clip.h>
#include <styleclip/models/generator.h>

int main(int argc, char** argv) {
  using namespace styleclip;
  if (argc != 5) {
    std::fprintf(stderr, "usage: edit_latent BUNDLE MAPPER PROMPT NEUTRAL\n");
    return 2;
  }
  try {
    const auto bundle = Bundle::open(argv[1]);
    const torch::Device device = torch::kCPU;
    const Generator gen(bundle, device);
    const Clip clip(bundle, device);
    const EngineModels models{&bundle, &gen, &clip, nullptr, device, Precision::kFp32};
    // Seed 0's latent, truncated toward the average as `styleclip generate --seed 0` does.
    const auto w = gen.truncate(gen.mapping(gen.seed_z(0).unsqueeze(0).to(device)), 0.7);
    const auto ws = gen.broadcast(w);

    int failures = 0;
    for (const auto& engine : engines()) {
      EngineSettings settings;  // the options `styleclip edit` would pass, by name
      if (engine.name == "optimize") settings.set("--steps", "40");
      if (engine.name == "mapper") settings.set("--mapper", argv[2]);
      if (engine.name == "global") settings.set("--neutral", argv[4]);
      auto editor = engine.create(models, settings);
      editor->prepare(argv[3], {});
      const auto result = editor->edit(ws, {});
      const double before = result.metrics.at(0)["clip_similarity_before"];
      const double after = result.metrics.at(0)["clip_similarity_after"];
      std::printf("%-9s clip similarity with '%s': %.4f -> %.4f\n", engine.name.c_str(), argv[3],
                  before, after);
      if (!(after > before)) ++failures;
    }
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edit_latent: %s\n", e.what());
    return 1;
  }
}
