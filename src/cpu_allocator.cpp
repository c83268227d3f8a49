// The CPU tensor allocator: see include/styleclip/cpu_allocator.h for why it exists.
#include <styleclip/cpu_allocator.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
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

[[noreturn]] void out_of_memory(std::size_t n, int err) {
  // "can't allocate memory" is what LibTorch's own allocator says, and what the CLI reads as
  // an out-of-memory error (is_out_of_memory in runtime.cpp).
  TORCH_CHECK(false, "CPU allocator: can't allocate memory: you tried to allocate ", n, " bytes (",
              std::strerror(err), ")");
}

// Every buffer starts with a header of one alignment unit, so that one deleter serves both
// kinds without a lock or a lookup: LibTorch's raw_allocate / raw_deallocate (used inside
// ATen) need a single deleter whose context is the data pointer.
struct Header {
  std::uint64_t magic;
  std::uint64_t size;  // of the whole mapping, header included; 0 for a small buffer
};
static_assert(sizeof(Header) <= kAlignment, "the header must fit in one alignment unit");
constexpr std::uint64_t kMagic = 0x5374796c65434c50ull;  // "StyleCLP"

void* with_header(void* base, std::uint64_t size) {
  auto* h = static_cast<Header*>(base);
  h->magic = kMagic;
  h->size = size;
  return static_cast<char*>(base) + kAlignment;
}

Header* header_of(void* p) {
  auto* h = reinterpret_cast<Header*>(static_cast<char*>(p) - kAlignment);
  TORCH_INTERNAL_ASSERT(h->magic == kMagic, "CPU allocator: freeing a buffer it did not allocate");
  return h;
}

void* small_allocate(std::size_t n) {
  void* base = nullptr;
  const int err = posix_memalign(&base, kAlignment, n + kAlignment);
  if (err != 0) out_of_memory(n, err);
  return with_header(base, 0);
}

/// The large-buffer pool. One instance for the process, never destroyed: tensors may be freed
/// during static destruction.
class Pool {
 public:
  /// A mapping of at least n bytes: its start, and its size in *size.
  void* allocate(std::size_t n, std::size_t* size_out) {
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
        Block b = *best;
        cache_.erase(best);
        stats_.cached_bytes -= b.size;
        stats_.reused++;
        hand_out(b);
        *size_out = b.size;
        return b.ptr;
      }
    }
    Block b{map(size), size, 0};
    std::lock_guard<std::mutex> lock(mu_);
    stats_.mapped++;
    hand_out(b);
    *size_out = b.size;
    return b.ptr;
  }

  void free(void* p, std::size_t size) {
    std::vector<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Block b{p, size, ++tick_};
      stats_.live_bytes -= b.size;
      cache_.push_back(b);
      stats_.cached_bytes += b.size;
      // Oldest first out, until the cache is within its limit.
      while (stats_.cached_bytes > stats_.cache_limit && !cache_.empty()) {
        auto oldest =
            std::min_element(cache_.begin(), cache_.end(),
                             [](const Block& x, const Block& y) { return x.tick < y.tick; });
        evicted.push_back(*oldest);
        stats_.cached_bytes -= oldest->size;
        cache_.erase(oldest);
      }
      stats_.unmapped += evicted.size();
    }
    for (const Block& b : evicted) unmap(b);
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
    if (p == nullptr) out_of_memory(size, errno);
    return p;
  }

  static void* map_once(std::size_t size) {
#if defined(STYLECLIP_HAVE_MMAP)
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
#if defined(MADV_HUGEPAGE)
    // Where transparent huge pages are on "madvise" (Debian's and Ubuntu's default), a first
    // touch then faults in 2 MiB at a time. Failure only means small pages.
    (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
#else
    void* p = nullptr;
    return posix_memalign(&p, kHugePage, size) == 0 ? p : nullptr;
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
  std::vector<Block> cache_;
  std::uint64_t tick_ = 0;
  CpuAllocatorStats stats_{0, 0, 0, kMinCacheLimit, 0, 0, 0};
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose (see Pool)
  return *p;
}

void delete_buffer(void* p) {
  if (p == nullptr) return;
  Header* h = header_of(p);
  if (h->size == 0) {
    std::free(h);
  } else {
    pool().free(h, h->size);
  }
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
    std::memcpy(dest, src, count);
  }

 private:
  static c10::DataPtr make(std::size_t n) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &delete_buffer, cpu};
    void* p = nullptr;
    if (n + kAlignment < kLargeBytes) {
      p = small_allocate(n);
    } else {
      std::size_t size = 0;
      void* base = pool().allocate(n + kAlignment, &size);
      p = with_header(base, size);
    }
    return {p, p, &delete_buffer, cpu};
  }
};

std::once_flag g_install_once;
bool g_installed = false;

}  // namespace

void install_cpu_allocator() {
  std::call_once(g_install_once, [] {
    const char* choice = std::getenv("STYLECLIP_CPU_ALLOCATOR");
    if (choice != nullptr && std::string(choice) == "system") return;
    // Leaked like the pool: LibTorch keeps the pointer for the life of the process.
    static auto* allocator = new CachingCpuAllocator();
    // Priority above LibTorch's default (0), so the choice sticks.
    c10::SetCPUAllocator(allocator, /*priority=*/1);
    g_installed = true;
  });
}

bool cpu_allocator_installed() { return g_installed; }

CpuAllocatorStats cpu_allocator_stats() { return pool().stats(); }

void release_cpu_allocator_cache() { pool().release(); }

}  // namespace styleclip
