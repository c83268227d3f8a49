// styleclip/models/script_module.h — loading a bundle's TorchScript file with useful errors.
// Private to the models layer (the only layer that knows TorchScript method names), so the
// public headers need not include <torch/script.h>.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/script.h>

namespace styleclip {

/// Loads `path` onto `device`, checks that it has every method in `methods` (the `kind` of model
/// is named in the error, with `fix` as the hint), switches it to eval mode and freezes its
/// parameters (no requires_grad: saves ~14 % per optimisation step, docs/libtorch-notes.md).
torch::jit::Module load_script_module(const std::filesystem::path& path, torch::Device device,
                                      const std::string& kind,
                                      const std::vector<std::string>& methods,
                                      const std::string& fix);

}  // namespace styleclip
