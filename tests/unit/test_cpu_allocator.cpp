// The CPU tensor allocator (src/cpu_allocator.cpp): large buffers are kept and reused, the cache
// stays within its limit, every buffer is aligned, the raw interface ATen uses works, threads
// can share it, and running out of memory is an error the CLI recognises.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <styleclip/cpu_allocator.h>
#include <styleclip/runtime.h>
#include <torch/torch.h>

namespace styleclip {
namespace {

constexpr std::int64_t kMiB = 1 << 20;

/// Floats for a buffer of `mib` MiB.
torch::Tensor buffer(std::int64_t mib) { return torch::empty({mib * kMiB / 4}); }

class CpuAllocator : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_allocator_installed()) GTEST_SKIP() << "STYLECLIP_CPU_ALLOCATOR=system";
    release_cpu_allocator_cache();
  }
};

TEST_F(CpuAllocator, IsWhatLibTorchAllocatesWith) {
  // configure_runtime() (the test environment's set-up) installed it.
  const auto before = cpu_allocator_stats();
  auto t = buffer(40);
  EXPECT_EQ(cpu_allocator_stats().live_bytes, before.live_bytes + 40 * kMiB);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % (2 * kMiB), 0u)
      << "large buffers start on a huge page";
  auto odd = torch::empty({(33 * kMiB + 5) / 4});
  EXPECT_EQ(cpu_allocator_stats().live_bytes, before.live_bytes + 40 * kMiB + 34 * kMiB)
      << "sizes are rounded up to 2 MiB";
}

TEST_F(CpuAllocator, AFreedLargeBufferServesTheNextRequestOfItsSize) {
  void* first = nullptr;
  {
    auto t = buffer(48);
    t.fill_(1.0f);
    first = t.data_ptr();
  }
  const auto before = cpu_allocator_stats();
  EXPECT_GE(before.cached_bytes, static_cast<std::size_t>(48 * kMiB));
  auto again = buffer(48);
  EXPECT_EQ(again.data_ptr(), first);
  const auto after = cpu_allocator_stats();
  EXPECT_EQ(after.reused, before.reused + 1);
  EXPECT_EQ(after.mapped, before.mapped);
  again = torch::Tensor();  // cached again
  EXPECT_GE(cpu_allocator_stats().cached_bytes, static_cast<std::size_t>(48 * kMiB));
  // A request more than an eighth smaller does not take it (it would waste too much).
  auto smaller = buffer(36);
  EXPECT_NE(smaller.data_ptr(), first);
  EXPECT_EQ(cpu_allocator_stats().mapped, before.mapped + 1);
}

TEST_F(CpuAllocator, TheCacheStaysWithinItsLimit) {
  // Hold 300 MiB (the limit follows the peak), then free buffers of many sizes.
  std::vector<torch::Tensor> held;
  for (int i = 0; i < 6; ++i) held.push_back(buffer(50));
  const auto limit = cpu_allocator_stats().cache_limit;
  EXPECT_GE(limit, static_cast<std::size_t>(300 * kMiB));
  const auto unmapped_before = cpu_allocator_stats().unmapped;
  held.clear();
  for (int round = 0; round < 3; ++round) {
    for (std::int64_t mib = 34; mib < 200; mib += 17) (void)buffer(mib);
  }
  const auto s = cpu_allocator_stats();
  EXPECT_LE(s.cached_bytes, s.cache_limit);
  EXPECT_GT(s.unmapped, unmapped_before) << "distinct sizes past the limit must be unmapped";
  release_cpu_allocator_cache();
  EXPECT_EQ(cpu_allocator_stats().cached_bytes, 0u);
}

TEST_F(CpuAllocator, TheCacheGivesBackTheOldestFirst) {
  // Cache A (100 MiB), then B (120 MiB), then 34 MiB fillers one at a time until the cache
  // passes its limit: the first buffer given back must be A, the oldest, and B must stay.
  {
    auto a = buffer(100);
    auto b = buffer(120);
    a = torch::Tensor();
    b = torch::Tensor();
  }
  const auto limit = cpu_allocator_stats().cache_limit;
  const auto cached = cpu_allocator_stats().cached_bytes;
  ASSERT_EQ(cached, static_cast<std::size_t>(220 * kMiB));
  // Enough fillers to pass the limit, allocated together (so none reuses another) while
  // staying below the peak that set the limit.
  const auto needed = static_cast<int>((limit - cached) / (34 * kMiB)) + 1;
  std::vector<torch::Tensor> fillers;
  for (int i = 0; i < needed; ++i) fillers.push_back(buffer(34));
  ASSERT_EQ(cpu_allocator_stats().cache_limit, limit) << "the fillers raised the limit";
  const auto unmapped = cpu_allocator_stats().unmapped;
  while (!fillers.empty() && cpu_allocator_stats().unmapped == unmapped) fillers.pop_back();
  ASSERT_EQ(cpu_allocator_stats().unmapped, unmapped + 1) << "exactly one buffer given back";
  fillers.clear();
  const auto before = cpu_allocator_stats();
  auto b = buffer(120);
  EXPECT_EQ(cpu_allocator_stats().reused, before.reused + 1) << "B is still cached";
  auto a = buffer(100);
  EXPECT_EQ(cpu_allocator_stats().mapped, before.mapped + 1) << "A was given back";
}

TEST_F(CpuAllocator, BuffersAreAlignedForVectorUnits) {
  for (std::int64_t n : {1, 3, 17, 1000, 100000, 9000000, 12000000}) {
    auto t = torch::empty({n}, torch::kUInt8);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 64, 0u) << n << " bytes";
  }
  auto empty = torch::empty({0});
  EXPECT_EQ(empty.numel(), 0);
}

TEST_F(CpuAllocator, RawAllocateAndDeallocateWork) {
  // ATen allocates scratch space this way; it needs a deleter whose context is the pointer.
  c10::Allocator* a = c10::GetCPUAllocator();
  ASSERT_NE(a->raw_deleter(), nullptr);
  for (std::size_t n : {std::size_t{100}, std::size_t{33} << 20}) {
    void* p = a->raw_allocate(n);
    ASSERT_NE(p, nullptr);
    static_cast<char*>(p)[n - 1] = 7;
    a->raw_deallocate(p);
  }
}

TEST_F(CpuAllocator, ABufferFromLibTorchsOwnAllocatorCanBeGivenBackThroughIt) {
  // A raw allocation made before the allocator was installed and freed after it reaches our
  // deleter; it must go back to the C library, not crash or enter the pool.
  c10::Allocator* theirs = c10::GetDefaultCPUAllocator();
  c10::Allocator* ours = c10::GetCPUAllocator();
  ASSERT_NE(theirs, ours);
  const auto before = cpu_allocator_stats();
  for (std::size_t n : {std::size_t{64}, std::size_t{40} << 20}) {
    void* p = theirs->raw_allocate(n);
    static_cast<char*>(p)[n - 1] = 1;
    ours->raw_deallocate(p);
  }
  // One that starts on a 2 MiB boundary, as the pool's own do: the pool must not take it.
  void* aligned = nullptr;
  ASSERT_EQ(posix_memalign(&aligned, std::size_t{2} << 20, std::size_t{40} << 20), 0);
  ours->raw_deallocate(aligned);
  EXPECT_EQ(cpu_allocator_stats().cached_bytes, before.cached_bytes);
}

TEST_F(CpuAllocator, ThreadsShareItSafely) {
  const auto live_before = cpu_allocator_stats().live_bytes;
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([k, &failures] {
      std::mt19937 rng(static_cast<unsigned>(k));
      std::vector<torch::Tensor> keep;
      for (int i = 0; i < 60; ++i) {
        const bool large = rng() % 3 == 0;
        const std::int64_t n = large ? (9 + rng() % 6) * kMiB : 1 + rng() % 5000;  // floats
        auto t = torch::full({n}, static_cast<float>(k * 1000 + i));
        if (t[n - 1].item<float>() != static_cast<float>(k * 1000 + i)) failures[k]++;
        keep.push_back(t);
        if (keep.size() > 3) keep.erase(keep.begin() + static_cast<long>(rng() % keep.size()));
      }
      for (std::size_t j = 0; j < keep.size(); ++j) {
        if (!torch::all(keep[j] == keep[j][0]).item<bool>()) failures[k]++;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(failures[k], 0) << "thread " << k;
  EXPECT_EQ(cpu_allocator_stats().live_bytes, live_before);
}

TEST_F(CpuAllocator, RunningOutOfMemoryIsAnErrorTheCliRecognises) {
  // 2^50 bytes: more than any machine this runs on can map.
  try {
    auto t = torch::empty({std::int64_t{1} << 48});
    FAIL() << "allocated a PiB";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(is_out_of_memory(e.what_without_backtrace())) << e.what_without_backtrace();
  }
  // A size the pool's 2 MiB rounding could not represent is refused before any rounding.
  try {
    (void)c10::GetCPUAllocator()->allocate(std::numeric_limits<std::size_t>::max() - 10);
    FAIL() << "allocated SIZE_MAX bytes";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(is_out_of_memory(e.what_without_backtrace())) << e.what_without_backtrace();
  }
  // The pool is still usable afterwards.
  auto t = buffer(40);
  t.fill_(2.0f);
  EXPECT_EQ(t[0].item<float>(), 2.0f);
}

}  // namespace
}  // namespace styleclip
