// styleclip/runtime.h — process-wide LibTorch settings: threads, devices, executor options.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>
#include <torch/types.h>

namespace styleclip {

/// Sets Torch's intra-op thread count (0 = $OMP_NUM_THREADS if set, else all cores) and turns off
/// the profiling executor's specialisation pass, which makes the first calls of a scripted module
/// about 8× slower with no steady-state gain here (docs/libtorch-notes.md).
void configure_runtime(int threads);

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`. `auto` picks CUDA when available. Throws a device
/// error (exit code 5) when CUDA is asked for but absent, a usage error for anything else.
torch::Device parse_device(const std::string& spec);

/// The arithmetic of the models' forward passes (`--precision`, docs/cli.md). The latents, the
/// optimiser state and the losses stay fp32 whatever is chosen; only the generator's and CLIP's
/// convolutions and matrix products run at the lower precision, through LibTorch's autocast.
enum class Precision {
  kFp32,  ///< plain fp32; on CUDA also with TF32 switched off (cuDNN allows it by default)
  kTf32,  ///< fp32 tensors, TF32 matrix units on CUDA (Ampere and later); same as fp32 on the CPU
  kBf16,  ///< autocast to bfloat16 (CUDA, or CPU)
  kFp16,  ///< autocast to float16 (CUDA only)
};

/// Parses `auto`, `fp32`, `tf32`, `bf16` or `fp16` for `device`. `auto` is bf16 on CUDA (this
/// tool's default: every GPU it targets has bf16 units) and fp32 on the CPU, where bf16
/// is emulated on most processors and slower than fp32. fp16 on the CPU is a usage error.
Precision parse_precision(const std::string& spec, const torch::Device& device);
std::string to_string(Precision p);

/// For the scope's lifetime, runs the forward passes of the models on `device` at precision `p`:
/// autocast on that device type with the precision's dtype, its weight-cast cache off (the cache
/// would keep a stale copy of a leaf that is optimised in place, such as the W+ latent or the
/// mapper's weights), and the TF32 switches set. Restores the previous state when it ends.
/// Models' outputs are turned back to fp32 by Generator and Clip, so the losses stay fp32.
class PrecisionScope {
 public:
  PrecisionScope(Precision p, const torch::Device& device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;
  PrecisionScope(PrecisionScope&&) = delete;
  PrecisionScope& operator=(PrecisionScope&&) = delete;

 private:
  c10::DeviceType type_;
  bool autocast_ = false;
  bool prev_enabled_ = false;
  bool prev_cache_ = true;
  c10::ScalarType prev_dtype_ = c10::ScalarType::Float;
  bool tf32_ = false;
  bool prev_tf32_cublas_ = false;
  bool prev_tf32_cudnn_ = true;
};

/// Waits for the work queued on a CUDA `device` (no-op on the CPU): for timing, and at the end of
/// a loop that never reads values back.
void synchronize_device(const torch::Device& device);

/// Whether this LibTorch was built with CUDA memory statistics (a CUDA LibTorch).
bool have_cuda_memory_stats();
/// Resets the peak of the CUDA caching allocator's allocated bytes on `device` (no-op elsewhere).
void reset_peak_device_memory(const torch::Device& device);
/// The peak bytes allocated on a CUDA `device` since the last reset; -1 when unknown (CPU).
int64_t peak_device_memory(const torch::Device& device);

/// Where the core library's warnings go (a prompt cut to CLIP's context, ...). The default prints
/// "styleclip: warning: MESSAGE" to stderr; the CLI routes them to its logger. The core library
/// does not use spdlog itself: PyTorch 2.x ships its own fmt headers, which Debian's spdlog
/// (built for fmt 9) does not compile against, and the core must build beside any LibTorch.
using WarningSink = void (*)(const std::string& message);
void set_warning_sink(WarningSink sink);
void warn(const std::string& message);

/// A one-line message for a LibTorch exception, without the C++ stack trace.
std::string torch_message(const std::exception& e);
/// Whether a (torch_message) text reports an allocation failure, on the CPU or a CUDA device.
bool is_out_of_memory(const std::string& message);

}  // namespace styleclip
