// numpy's legacy RandomState reproduced bit for bit: compared with numpy itself, run at test time,
// for seeds at both ends of its range and for odd and even counts (an odd count ends on a
// Gaussian whose cached partner is never used; an even one uses every cached value).
#include <styleclip/models/numpy_random.h>

#include <cstring>
#include <sstream>

#include "test_support.h"

namespace styleclip {
namespace {

const std::vector<uint64_t> kSeeds = {0, 1, 7, 123, 4294967295ULL};
const std::vector<int64_t> kCounts = {1, 2, 3, 7, 32, 512, 513};

/// Lines "seed count kind v0 v1 ..." printed by numpy; float32 and float64 values as raw bits,
/// so the comparison is exact.
test::RunResult numpy_reference() {
  std::ostringstream seeds;
  std::ostringstream counts;
  for (const auto s : kSeeds) seeds << s << ",";
  for (const auto n : kCounts) counts << n << ",";
  const std::string code =
      "import numpy as np\n"
      "for s in [" +
      seeds.str() +
      "]:\n"
      "  for n in [" +
      counts.str() +
      "]:\n"
      "    z = np.random.RandomState(s).randn(n).astype(np.float32).view(np.uint32)\n"
      "    print(s, n, 'randn', *z.tolist())\n"
      "  u = np.random.RandomState(s).random_sample(9).view(np.uint64)\n"
      "  print(s, 9, 'random', *u.tolist())\n";
  return test::run_program({STYLECLIP_PYTHON, "-c", code});
}

uint32_t bits(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

uint64_t bits(double d) {
  uint64_t u = 0;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

TEST(NumpyRandom, RandnAndRandomSampleEqualNumpyExactly) {
  const auto ref = numpy_reference();
  ASSERT_EQ(ref.code, 0) << STYLECLIP_PYTHON << " with numpy: " << ref.err;
  std::istringstream lines(ref.out);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    std::istringstream in(line);
    uint64_t seed = 0;
    int64_t n = 0;
    std::string kind;
    in >> seed >> n >> kind;
    if (kind == "randn") {
      const auto ours = numpy_randn(static_cast<uint32_t>(seed), n);
      ASSERT_EQ(static_cast<int64_t>(ours.size()), n);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t expected = 0;
        in >> expected;
        ASSERT_EQ(bits(ours[static_cast<size_t>(i)]), expected)
            << "randn: seed " << seed << ", count " << n << ", value " << i;
      }
    } else {
      NumpyRandomState rs(static_cast<uint32_t>(seed));
      for (int64_t i = 0; i < n; ++i) {
        uint64_t expected = 0;
        in >> expected;
        ASSERT_EQ(bits(rs.random_double()), expected)
            << "random_sample: seed " << seed << ", value " << i;
      }
    }
    ASSERT_FALSE(in.fail()) << line;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(kSeeds.size() * (kCounts.size() + 1)));
}

TEST(NumpyRandom, AShorterDrawIsAPrefixOfALongerOne) {
  // numpy's randn(n) is n successive gauss() calls: the pairs must not depend on n.
  const auto longer = numpy_randn(42, 9);
  for (int64_t n = 1; n < 9; ++n) {
    const auto shorter = numpy_randn(42, n);
    EXPECT_TRUE(std::equal(shorter.begin(), shorter.end(), longer.begin())) << n;
  }
}

}  // namespace
}  // namespace styleclip
