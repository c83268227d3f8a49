// numpy's legacy RandomState normals, bit for bit (sources named in numpy_random.h).
//
// Built with -ffp-contract=off (src/CMakeLists.txt): numpy evaluates `x1 * x1 + x2 * x2` with two
// roundings, and a fused multiply-add on a CPU that has one would change r2 in its last bit,
// which can flip the rejection test and shift the whole sequence.
#include <styleclip/models/numpy_random.h>

#include <cmath>

namespace styleclip {

NumpyRandomState::NumpyRandomState(uint32_t seed) : mt_(seed) {}

double NumpyRandomState::random_double() {
  // mt19937_next_double: 27 high bits of the first draw and 26 of the second, over 2^53.
  const auto a = static_cast<uint32_t>(mt_() >> 5);
  const auto b = static_cast<uint32_t>(mt_() >> 6);
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

double NumpyRandomState::gauss() {
  if (has_gauss_) {
    has_gauss_ = false;
    const double cached = gauss_;
    gauss_ = 0.0;
    return cached;
  }
  double x1 = 0.0;
  double x2 = 0.0;
  double r2 = 0.0;
  do {
    x1 = 2.0 * random_double() - 1.0;
    x2 = 2.0 * random_double() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  // numpy returns the x2 value now and keeps the x1 value for the next call.
  gauss_ = f * x1;
  has_gauss_ = true;
  return f * x2;
}

std::vector<float> numpy_randn(uint32_t seed, int64_t n) {
  NumpyRandomState rs(seed);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(n > 0 ? n : 0));
  // randn draws float64; astype(float32) rounds each to nearest, as static_cast does.
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<float>(rs.gauss()));
  return out;
}

}  // namespace styleclip
