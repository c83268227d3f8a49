// The CPU tensor allocator: see include/styleclip/cpu_allocator.h for why it exists.
#include <styleclip/cpu_allocator.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#if defined(__linux__)
#include <sys/mman.h>
#define STYLECLIP_HAVE_MMAP 1
#endif

namespace styleclip {
namespace {

constexpr std::size_t kAlignment = 64;  // LibTorch's CPU allocator (c10 gAlignment), for AVX-512
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kMinCacheLimit = std::size_t{256} << 20;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

/// Whether a pool buffer of n bytes can be described at all (c10's allocator has the same cap).
bool representable(std::size_t n) {
  return n <= static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) - kHugePage;
}

bool huge_page_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % kHugePage == 0;
}

[[noreturn]] void out_of_memory(std::size_t n, int err) {
  // "can't allocate memory" is what LibTorch's own allocator says, and what the CLI reads as
  // an out-of-memory error (is_out_of_memory in runtime.cpp).
  TORCH_CHECK(false, "CPU allocator: can't allocate memory: you tried to allocate ", n, " bytes (",
              std::strerror(err), ")");
}

/// The large-buffer pool. One instance for the process, never destroyed: tensors may be freed
/// during static destruction. Its buffers start on a 2 MiB boundary, which no buffer from the
/// C library is likely to, so the deleter asks the pool only about such pointers.
class Pool {
 public:
  void* allocate(std::size_t n) {
    const std::size_t size = round_up(n, kHugePage);
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The smallest cached buffer that fits without wasting more than an eighth.
      auto best = cache_.end();
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (it->size >= size && it->size <= size + size / 8 &&
            (best == cache_.end() || it->size < best->size)) {
          best = it;
        }
      }
      if (best != cache_.end()) {
        const Block b = *best;
        cache_.erase(best);
        stats_.cached_bytes -= b.size;
        stats_.reused++;
        hand_out(b);
        return b.ptr;
      }
    }
    const Block b{map(size), size, 0};
    std::lock_guard<std::mutex> lock(mu_);
    stats_.mapped++;
    hand_out(b);
    return b.ptr;
  }

  /// Takes p back if it is one of the pool's buffers; false (and nothing done) otherwise.
  bool give_back(void* p) {
    std::vector<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = live_.find(p);
      if (it == live_.end()) return false;
      const Block b{p, it->second, ++tick_};
      live_.erase(it);
      stats_.live_bytes -= b.size;
      cache_.push_back(b);
      stats_.cached_bytes += b.size;
      // Oldest first out, until the cache is within its limit.
      while (stats_.cached_bytes > stats_.cache_limit && !cache_.empty()) {
        const auto oldest =
            std::min_element(cache_.begin(), cache_.end(),
                             [](const Block& x, const Block& y) { return x.tick < y.tick; });
        evicted.push_back(*oldest);
        stats_.cached_bytes -= oldest->size;
        cache_.erase(oldest);
      }
      stats_.unmapped += evicted.size();
    }
    for (const Block& b : evicted) unmap(b);
    return true;
  }

  void release() {
    std::vector<Block> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all.swap(cache_);
      stats_.cached_bytes = 0;
      stats_.unmapped += all.size();
    }
    for (const Block& b : all) unmap(b);
  }

  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  struct Block {
    void* ptr;
    std::size_t size;
    std::uint64_t tick;  // when it was freed: the cache gives back the oldest first
  };

  // Under mu_.
  void hand_out(const Block& b) {
    live_.emplace(b.ptr, b.size);
    stats_.live_bytes += b.size;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.cache_limit = std::max(kMinCacheLimit, stats_.peak_live_bytes);
  }

  void* map(std::size_t size) {
    void* p = map_once(size);
    if (p == nullptr) {
      release();  // the cache may hold what this request needs
      p = map_once(size);
    }
    if (p == nullptr) out_of_memory(size, errno);  // the rounded size: what the kernel refused
    return p;
  }

  /// size bytes starting on a 2 MiB boundary, or nullptr (errno set).
  static void* map_once(std::size_t size) {
#if defined(STYLECLIP_HAVE_MMAP)
    // Map one huge page more than needed and cut off the unaligned ends.
    const std::size_t span = size + kHugePage;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = round_up(start, kHugePage);
    const std::uintptr_t end = start + span;
    // Cutting a mapping in two can fail (vm.max_map_count): then give all of it back.
    if ((aligned > start && munmap(raw, aligned - start) != 0) ||
        (end > aligned + size &&
         munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size) != 0)) {
      const int err = errno;
      munmap(raw, span);
      errno = err;
      return nullptr;
    }
    void* p = reinterpret_cast<void*>(aligned);
#if defined(MADV_HUGEPAGE)
    // Where transparent huge pages are on "madvise" (Debian's and Ubuntu's default), a first
    // touch then faults in 2 MiB at a time. Failure only means small pages.
    (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
#else
    void* p = nullptr;
    const int err = posix_memalign(&p, kHugePage, size);
    if (err != 0) errno = err;
    return err == 0 ? p : nullptr;
#endif
  }

  static void unmap(const Block& b) {
#if defined(STYLECLIP_HAVE_MMAP)
    munmap(b.ptr, b.size);
#else
    std::free(b.ptr);
#endif
  }

  std::mutex mu_;
  std::unordered_map<void*, std::size_t> live_;
  std::vector<Block> cache_;
  std::uint64_t tick_ = 0;
  CpuAllocatorStats stats_{0, 0, 0, kMinCacheLimit, 0, 0, 0};
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose (see Pool)
  return *p;
}

/// The one deleter of every buffer (LibTorch's raw_allocate / raw_deallocate, used inside ATen,
/// need a single deleter whose context is the data pointer). A pointer the pool does not know
/// came from the C library: ours, or LibTorch's own allocator's (also posix_memalign) when a
/// raw allocation made before install_cpu_allocator() is given back after it.
void delete_buffer(void* p) {
  if (p == nullptr) return;
  if (huge_page_aligned(p) && pool().give_back(p)) return;
  std::free(p);
}

/// LibTorch's allocator interface. 1.x declares `allocate` const; 2.x declares it non-const and
/// adds `copy_data`. Both signatures are defined, neither marked override, so that each
/// LibTorch finds the one it declares.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) const { return make(n); }
  c10::DataPtr allocate(std::size_t n) { return make(n); }
  c10::DeleterFnPtr raw_deleter() const { return &delete_buffer; }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);  // empty storages have null pointers
  }

 private:
  static c10::DataPtr make(std::size_t n) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &delete_buffer, cpu};
    void* p = nullptr;
    if (n < kLargeBytes) {
      const int err = posix_memalign(&p, kAlignment, n);
      if (err != 0) out_of_memory(n, err);
    } else {
      if (!representable(n)) out_of_memory(n, ENOMEM);
      p = pool().allocate(n);
    }
    return {p, p, &delete_buffer, cpu};
  }
};

std::once_flag g_install_once;
std::atomic<bool> g_installed{false};

}  // namespace

void install_cpu_allocator() {
  std::call_once(g_install_once, [] {
    const char* choice = std::getenv("STYLECLIP_CPU_ALLOCATOR");
    if (choice != nullptr && std::string(choice) == "system") return;
    // Leaked like the pool: LibTorch keeps the pointer for the life of the process.
    static auto* allocator = new CachingCpuAllocator();
    // Priority above LibTorch's default (0), so the choice sticks.
    c10::SetCPUAllocator(allocator, /*priority=*/1);
    g_installed.store(true);
  });
}

bool cpu_allocator_installed() { return g_installed.load(); }

CpuAllocatorStats cpu_allocator_stats() { return pool().stats(); }

void release_cpu_allocator_cache() { pool().release(); }

}  // namespace styleclip
