// styleclip/cpu_allocator.h — a CPU tensor allocator that keeps large freed buffers for reuse.
#pragma once

#include <cstddef>
#include <cstdint>

namespace styleclip {

/// What the allocator holds and has done since it was installed (bytes and counts).
struct CpuAllocatorStats {
  std::size_t live_bytes = 0;  ///< large buffers handed out and not yet freed
  std::size_t peak_live_bytes = 0;
  std::size_t cached_bytes = 0;  ///< large buffers freed and kept for reuse
  std::size_t cache_limit = 0;   ///< the most the cache may hold now (see install_cpu_allocator)
  std::uint64_t mapped = 0;      ///< large buffers obtained from the kernel
  std::uint64_t reused = 0;      ///< large requests served from the cache
  std::uint64_t unmapped = 0;    ///< large buffers given back to the kernel
};

/// Makes LibTorch's CPU tensors come from an allocator that keeps large freed buffers.
///
/// Why: glibc serves every request above 32 MiB (its largest mmap threshold) with a fresh mmap
/// and gives it back on free, so the kernel must fault in and zero each 4 KiB page again on
/// every use. The generator's activations at 1024 px are 32–128 MiB each; an optimisation step
/// there spent more than half its time in page faults (bench/RESULTS.md, "CPU at FFHQ-1024
/// size"). Requests of at least `kLargeBytes` are mapped here (rounded up to 2 MiB, starting on
/// a 2 MiB boundary, with transparent huge pages asked for), and freed ones kept for a later
/// request of the same size (up to 1/8 larger). The cache is bounded: it never holds more than the
/// largest amount of large memory that was live at once (at least 256 MiB), so the process
/// needs at most about twice its working set, and usually far less because a step's sizes
/// repeat. Smaller requests go to the C library with the 64-byte alignment LibTorch's own CPU
/// allocator uses.
///
/// The cache holds its buffers until the process ends (or release_cpu_allocator_cache()), and
/// they are not reported to LibTorch's profiler, whose memory view therefore misses them; peak
/// RSS (what the benchmarks report) includes them.
///
/// Idempotent and thread-safe; tensors allocated before it was installed are freed by their
/// own allocator. Called by configure_runtime(); STYLECLIP_CPU_ALLOCATOR=system in the
/// environment leaves LibTorch's allocator in place (for comparisons).
void install_cpu_allocator();

/// True once install_cpu_allocator() has replaced LibTorch's CPU allocator.
bool cpu_allocator_installed();

CpuAllocatorStats cpu_allocator_stats();

/// Gives every cached buffer back to the kernel (the cache refills on later requests).
void release_cpu_allocator_cache();

/// Requests of at least this many bytes are served (and cached) by the allocator itself.
inline constexpr std::size_t kLargeBytes = std::size_t{32} << 20;

}  // namespace styleclip
