#include <styleclip/error.h>
#include <styleclip/runtime.h>

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

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
