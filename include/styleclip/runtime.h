// styleclip/runtime.h — process-wide LibTorch settings: threads, devices, executor options.
#pragma once

#include <string>

#include <torch/types.h>

namespace styleclip {

/// Sets Torch's intra-op thread count (0 = $OMP_NUM_THREADS if set, else all cores) and turns off
/// the profiling executor's specialisation pass, which makes the first calls of a scripted module
/// about 8× slower with no steady-state gain here (shared/docs/LIBTORCH-NOTES.md).
void configure_runtime(int threads);

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`. `auto` picks CUDA when available. Throws a device
/// error (exit code 5) when CUDA is asked for but absent, a usage error for anything else.
torch::Device parse_device(const std::string& spec);

/// A one-line message for a LibTorch exception, without the C++ stack trace.
std::string torch_message(const std::exception& e);
/// Whether a (torch_message) text reports an allocation failure, on the CPU or a CUDA device.
bool is_out_of_memory(const std::string& message);

}  // namespace styleclip
