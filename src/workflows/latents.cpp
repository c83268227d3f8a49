// Latent datasets (latents.h).
#include <styleclip/workflows/latents.h>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/inputs.h>
#include <styleclip/workflows/run.h>

namespace styleclip {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::string> latent_globs() { return {"*.latent.pt"}; }

GatheredLatents gather_latents(const std::vector<std::string>& paths, bool recursive,
                               const std::vector<std::string>& globs, const GeneratorInfo& info) {
  const auto files =
      load_latent_files(expand_inputs(paths, recursive, globs.empty() ? latent_globs() : globs),
                        info.num_ws, info.w_dim);
  require_some_readable(files, /*other_inputs=*/false);
  GatheredLatents g;
  g.sources = json::array();
  g.failed = json::array();
  std::vector<torch::Tensor> parts;
  int64_t row = 0;
  for (const auto& f : files) {
    const auto file = fs::absolute(f.file.path).string();
    if (!f.error.empty()) {
      spdlog::warn("{}", f.error);
      g.failed.push_back({{"file", file}, {"error", f.error}});
      continue;
    }
    parts.push_back(f.ws);
    g.sources.push_back({{"file", file}, {"first", row}, {"rows", f.ws.size(0)}});
    row += f.ws.size(0);
  }
  g.ws = torch::cat(parts, 0).contiguous();
  return g;
}

PackReport pack_latents(const PackRun& run) {
  if (run.out.extension() != ".pt") {
    throw usage_error("invalid --out '" + run.out.string() +
                      "': name the .pt file to write, e.g. --out train.pt");
  }
  if (run.inputs.empty()) throw usage_error("give latent files or folders to pack");
  const auto bundle = Bundle::open(run.models);
  const auto& info = bundle.generator();
  const auto g = gather_latents(run.inputs, run.recursive, run.globs, info);
  PackReport report;
  report.out = run.out;
  report.sidecar = fs::path(run.out).replace_extension(".json");
  report.rows = g.ws.size(0);
  report.files = g.sources.size();
  report.failed = g.failed.size();
  report.exit_code = report.failed > 0 ? static_cast<int>(ExitCode::kSomeInputsFailed) : 0;
  ensure_output_dir(run.out.parent_path().empty() ? fs::path(".") : run.out.parent_path());
  save_tensor_pt(run.out, g.ws);
  write_json(report.sidecar, {{"command", "latents pack"},
                              {"rows", report.rows},
                              {"num_ws", info.num_ws},
                              {"w_dim", info.w_dim},
                              {"generator_sha256", bundle.sha256("generator")},
                              {"sources", g.sources},
                              {"failed", g.failed}});
  spdlog::info("{} latents from {} files into {}{}", report.rows, report.files, run.out.string(),
               report.failed > 0 ? " (" + std::to_string(report.failed) + " files unreadable)"
                                 : std::string());
  return report;
}

}  // namespace styleclip
