// Golden regression test: the stored sample latents in tests/golden/latents, run through
// `generate` and `edit` on the tiny bundle exactly as tests/golden/make_golden.sh did, must give
// the stored outputs within `styleclip compare`'s default tolerances. These files detect change,
// not correctness (correctness is tested against ../shared/fixtures); regenerate them with
// make_golden.sh only for an intended change.
#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using test::styleclip;

TEST(Golden, GenerateAndEditMatchTheStoredOutputs) {
  SKIP_UNLESS_BUNDLE("tiny");
  const fs::path golden = fs::path(STYLECLIP_SOURCE_DIR) / "tests" / "golden";
  const auto bundle = test::testdata("tiny").string();
  const auto latents = golden / "latents";
  test::TempDir tmp;
  auto r = styleclip({"generate", "--models", bundle, "--latent", (latents / "a.pt").string(),
                      "--latent", (latents / "b.pt").string(), "--latent",
                      (latents / "c.pt").string(), "--out", (tmp / "generate").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = styleclip({"edit", "--models", bundle, "--text", "a red face", "--steps", "3", "--compare",
                 latents.string(), "--out", (tmp / "edit").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto* part : {"generate", "edit"}) {
    // The bundle's checksums depend on where the exporter ran (TorchScript records source
    // paths), so they are left out; everything else must match.
    r = styleclip({"compare", (golden / "expected" / part).string(), (tmp / part).string(),
                   "--ignore", "models.sha256", "--json"});
    EXPECT_EQ(r.code, 0) << part << ":\n" << r.err;
    EXPECT_NE(r.out.find("\"ok\": true"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace styleclip
