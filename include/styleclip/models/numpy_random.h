// styleclip/models/numpy_random.h — numpy's legacy `np.random.RandomState` normal draws, so that
// a seed gives the z that NVIDIA's StyleGAN2-ADA/StyleGAN3 tools (`generate.py`:
// `np.random.RandomState(seed).randn(1, z_dim)`) give for it.
//
// Written from the public numpy sources: MT19937 seeded as `mt19937_seed` (Matsumoto and
// Nishimura's init_genrand, which std::mt19937's seed constructor also is) from
// `_legacy_seeding` in numpy/random/_mt19937.pyx; the 53-bit double `mt19937_next_double` in
// numpy/random/src/mt19937/mt19937.h; the Gaussian `legacy_gauss` (Marsaglia's polar method,
// the second value cached for the next call) in numpy/random/src/legacy/legacy-distributions.c.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace styleclip {

/// The largest seed RandomState accepts (numpy raises ValueError above it, and below 0).
constexpr uint64_t kNumpyMaxSeed = 0xffffffffULL;

/// The state of `np.random.RandomState(seed)` as far as `random_sample` and `randn` use it.
class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed);

  /// One `random_sample()`: a double in [0, 1) from two 32-bit draws.
  double random_double();
  /// One `standard_normal()` (legacy polar method, not the Generator API's ziggurat).
  double gauss();

 private:
  std::mt19937 mt_;
  double gauss_ = 0.0;
  bool has_gauss_ = false;
};

/// `np.random.RandomState(seed).randn(n).astype(np.float32)`.
std::vector<float> numpy_randn(uint32_t seed, int64_t n);

}  // namespace styleclip
