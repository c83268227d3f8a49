// `styleclip compare EXPECTED ACTUAL` — regression check of two output folders for users' CI:
// exit 0 when they agree within the tolerances, 1 with a readable report when they drift.
#include <styleclip/error.h>

#include <iostream>

#include <styleclip/workflows/compare.h>
#include "common.h"

namespace styleclip::cli {

namespace {

struct CompareOptions {
  std::string expected;
  std::string actual;
  CompareTolerance tol;
  bool json = false;
};

int run_compare(const CompareOptions& o) {
  if (o.tol.pixel_levels < 0 || o.tol.pixel_levels > 255)
    throw usage_error("invalid --tolerance " + std::to_string(o.tol.pixel_levels) +
                      ": 8-bit levels, 0 to 255");
  if (!(o.tol.tensor_abs >= 0) || !(o.tol.number_abs >= 0))
    throw usage_error("invalid --tensor-tolerance / --number-tolerance: must be zero or positive");
  const auto report = compare_folders(o.expected, o.actual, o.tol);
  log_report(report, o.expected, o.actual);
  if (o.json) {
    auto j = report.to_json();
    j["tolerance"] = o.tol.to_json();
    std::cout << j.dump(2) << "\n";
  }
  return report.ok() ? 0 : static_cast<int>(ExitCode::kSomeInputsFailed);
}

}  // namespace

void setup_compare(CLI::App& app, Registry& reg) {
  auto o = std::make_shared<CompareOptions>();
  auto* sub = app.add_subcommand(
      "compare", "compare two output folders (regression check): exit 1 when they drift");
  sub->add_option("expected", o->expected, "the reference (golden) folder")->required();
  sub->add_option("actual", o->actual, "the folder to check")->required();
  sub->add_option("--tolerance", o->tol.pixel_levels, "max difference of 8-bit image levels")
      ->capture_default_str();
  sub->add_option("--min-psnr", o->tol.min_psnr, "minimum PSNR (dB) of images that differ")
      ->capture_default_str();
  sub->add_option("--tensor-tolerance", o->tol.tensor_abs,
                  "max absolute difference of latents and styles (.pt)")
      ->capture_default_str();
  sub->add_option("--number-tolerance", o->tol.number_abs,
                  "max absolute difference of numbers in sidecars (.json)")
      ->capture_default_str();
  sub->add_option("--ignore", o->tol.ignore,
                  "a sidecar field to leave out, as a dotted path (e.g. models.sha256); repeatable")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  sub->add_flag("--json", o->json, "print the report as JSON on stdout");
  reg.push_back({sub, [o]() { return run_compare(*o); }});
}

}  // namespace styleclip::cli
