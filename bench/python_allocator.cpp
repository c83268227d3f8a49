// libstyleclip_python_allocator — styleclip's CPU allocator (include/styleclip/cpu_allocator.h)
// for the Python side of the benchmarks.
//
// Why: at FFHQ-1024 size most of the C++ side's lead over Python came from the allocator, not
// from C++ (bench/RESULTS.md). Loading this library into Python (bench/with_styleclip_allocator.py)
// gives both sides the same allocator, so a ratio measured that way compares the rest.
// It only works with the LibTorch that Python's torch itself loads (the same libc10): the
// allocator is installed into c10's allocator table, which a second copy of c10 would not share.
#include <styleclip/cpu_allocator.h>

extern "C" {

__attribute__((visibility("default"))) int styleclip_install_cpu_allocator() {
  styleclip::install_cpu_allocator();
  return styleclip::cpu_allocator_installed() ? 1 : 0;
}

__attribute__((visibility("default"))) unsigned long long styleclip_cpu_allocator_reused() {
  return styleclip::cpu_allocator_stats().reused;
}
}
