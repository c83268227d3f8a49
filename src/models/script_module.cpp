#include "script_module.h"
#include <styleclip/error.h>
#include <styleclip/runtime.h>

namespace styleclip {

torch::jit::Module load_script_module(const std::filesystem::path& path, torch::Device device,
                                      const std::string& kind,
                                      const std::vector<std::string>& methods,
                                      const std::string& fix) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path.string(), device);
  } catch (const std::exception& e) {
    throw bundle_error("cannot load " + kind + " '" + path.string() +
                       "': not a TorchScript archive (" + torch_message(e) + "); " + fix);
  }
  for (const auto& name : methods) {
    if (!module.find_method(name)) {
      throw bundle_error("'" + path.string() + "' is not a styleclip " + kind +
                         ": it has no method '" + name + "' (" + fix + ")");
    }
  }
  module.eval();
  for (auto p : module.parameters()) p.requires_grad_(false);
  return module;
}

}  // namespace styleclip
