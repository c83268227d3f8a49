#include <styleclip/cpu_allocator.h>
#include <styleclip/error.h>
#include <styleclip/runtime.h>

#include <atomic>
#include <cstdlib>
#include <iostream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <thread>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#if defined(STYLECLIP_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

// LibTorch 2.4 replaced the per-device autocast functions (set_enabled for CUDA,
// set_cpu_enabled, …) by ones that take the device type; the old ones are deprecated there.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define STYLECLIP_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace styleclip {

void configure_runtime(int threads) {
  if (threads <= 0) {
    // The OpenMP convention first, so that parallel jobs (ctest -j, job arrays) can share cores
    // without oversubscription, which costs far more than it gains with busy-waiting OpenMP.
    const char* omp = std::getenv("OMP_NUM_THREADS");
    threads = omp != nullptr ? std::atoi(omp) : 0;
  }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
#if defined(__GLIBC__)
  // Keep freed activation buffers in the heap instead of returning them to the kernel after
  // every step: with glibc's defaults the optimisation loop at 64 px, batch 4 spent ~10 % of its
  // time in page faults (bench/RESULTS.md); Python's allocator pattern happened to avoid them.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
  // Above glibc's largest mmap threshold, tensors come from a pool that keeps them (see
  // cpu_allocator.h: at 1024 px, page faults were more than half of an optimisation step).
  install_cpu_allocator();
  torch::jit::setGraphExecutorOptimize(false);
}

torch::Device parse_device(const std::string& spec) {
  if (spec == "auto")
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  if (spec == "cpu") return torch::kCPU;
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (spec.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(spec.substr(5), &used);
        if (used != spec.size() - 5 || index < 0) throw std::invalid_argument(spec);
      } catch (const std::exception&) {
        throw usage_error("invalid --device '" + spec + "': expected auto, cpu, cuda or cuda:N");
      }
    }
    if (!torch::cuda::is_available()) {
      throw device_error("--device '" + spec +
                         "': CUDA is not available on this machine (use --device cpu)");
    }
    if (index >= static_cast<int>(torch::cuda::device_count())) {
      throw device_error("--device '" + spec + "': only " +
                         std::to_string(torch::cuda::device_count()) + " CUDA device(s) present");
    }
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
  }
  throw usage_error("invalid --device '" + spec + "': expected auto, cpu, cuda or cuda:N");
}

Precision parse_precision(const std::string& spec, const torch::Device& device) {
  if (spec == "auto") return device.is_cuda() ? Precision::kBf16 : Precision::kFp32;
  if (spec == "fp32") return Precision::kFp32;
  if (spec == "tf32") return Precision::kTf32;
  if (spec == "bf16") return Precision::kBf16;
  if (spec == "fp16") {
    if (!device.is_cuda()) {
      throw usage_error(
          "--precision fp16 needs a CUDA device (LibTorch's CPU autocast has no fp16): "
          "use bf16 or fp32 on the CPU");
    }
    return Precision::kFp16;
  }
  throw usage_error("invalid --precision '" + spec + "': expected auto, fp32, tf32, bf16 or fp16");
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kTf32:
      return "tf32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
  }
  return "fp32";
}

namespace {

bool autocast_enabled(c10::DeviceType t) {
#if defined(STYLECLIP_AUTOCAST_BY_DEVICE_TYPE)
  return at::autocast::is_autocast_enabled(t);
#else
  return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType t, bool on) {
#if defined(STYLECLIP_AUTOCAST_BY_DEVICE_TYPE)
  at::autocast::set_autocast_enabled(t, on);
#else
  if (t == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType t) {
#if defined(STYLECLIP_AUTOCAST_BY_DEVICE_TYPE)
  return at::autocast::get_autocast_dtype(t);
#else
  return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                    : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType t, c10::ScalarType dtype) {
#if defined(STYLECLIP_AUTOCAST_BY_DEVICE_TYPE)
  at::autocast::set_autocast_dtype(t, dtype);
#else
  if (t == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace

PrecisionScope::PrecisionScope(Precision p, const torch::Device& device) : type_(device.type()) {
  if (device.is_cuda()) {
    // TF32 is a CUDA matter; both switches are set for fp32 and tf32 so that "fp32" means fp32
    // (PyTorch lets cuDNN's convolutions use TF32 by default).
    auto& ctx = at::globalContext();
    tf32_ = true;
    prev_tf32_cublas_ = ctx.allowTF32CuBLAS();
    prev_tf32_cudnn_ = ctx.allowTF32CuDNN();
    const bool on = p == Precision::kTf32;
    ctx.setAllowTF32CuBLAS(on);
    ctx.setAllowTF32CuDNN(on);
  }
  if (p == Precision::kBf16 || p == Precision::kFp16) {
    autocast_ = true;
    prev_enabled_ = autocast_enabled(type_);
    prev_dtype_ = autocast_dtype(type_);
    prev_cache_ = at::autocast::is_autocast_cache_enabled();
    set_autocast_dtype(type_, p == Precision::kBf16 ? at::kBFloat16 : at::kHalf);
    set_autocast_enabled(type_, true);
    at::autocast::set_autocast_cache_enabled(false);
    at::autocast::increment_nesting();
  }
}

PrecisionScope::~PrecisionScope() {
  if (autocast_) {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_cache_enabled(prev_cache_);
    set_autocast_enabled(type_, prev_enabled_);
    set_autocast_dtype(type_, prev_dtype_);
  }
  if (tf32_) {
    auto& ctx = at::globalContext();
    ctx.setAllowTF32CuBLAS(prev_tf32_cublas_);
    ctx.setAllowTF32CuDNN(prev_tf32_cudnn_);
  }
}

namespace {
void stderr_warning(const std::string& message) {
  std::cerr << "styleclip: warning: " << message << "\n";
}
std::atomic<WarningSink> g_warning_sink{&stderr_warning};
}  // namespace

void set_warning_sink(WarningSink sink) {
  g_warning_sink = sink != nullptr ? sink : &stderr_warning;
}

void warn(const std::string& message) { g_warning_sink.load()(message); }

void synchronize_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

bool have_cuda_memory_stats() {
#if defined(STYLECLIP_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

void reset_peak_device_memory(const torch::Device& device) {
#if defined(STYLECLIP_WITH_CUDA)
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
  }
#else
  (void)device;
#endif
}

int64_t peak_device_memory(const torch::Device& device) {
#if defined(STYLECLIP_WITH_CUDA)
  if (device.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[0].peak;  // [0]: StatType::AGGREGATE, in every version
  }
#else
  (void)device;
#endif
  return -1;
}

std::string torch_message(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    std::string m = c10->what_without_backtrace();
    const auto nl = m.find('\n');
    return nl == std::string::npos ? m : m.substr(0, nl);
  }
  std::string m = e.what();
  // TorchScript interpreter errors carry the script's traceback; the cause is the last line.
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  const auto nl = m.rfind('\n');
  if (nl == std::string::npos) return m;
  m = m.substr(nl + 1);
  const std::string prefix = "RuntimeError: ";
  return m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
}

bool is_out_of_memory(const std::string& message) {
  return message.find("out of memory") != std::string::npos ||
         message.find("can't allocate memory") != std::string::npos;
}

}  // namespace styleclip
