// styleclip/workflows/compare.h — regression comparison of two output folders (`styleclip compare`,
// `edit --golden`): images by 8-bit level difference and PSNR, tensors (.pt) by max absolute
// difference, sidecars (.json) field by field with volatile fields (time, timings, device,
// absolute paths) left out, and any other file byte for byte.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace styleclip {

struct CompareTolerance {
  int pixel_levels = 1;          ///< max per-channel difference of 8-bit images
  double min_psnr = 40.0;        ///< dB, for images that differ at all
  double tensor_abs = 1e-4;      ///< max |a - b| over latents and style tensors
  double number_abs = 1e-3;      ///< numbers in sidecars (metrics)
  std::set<std::string> ignore;  ///< sidecar fields left out, as dotted paths ("models.sha256")
  [[nodiscard]] nlohmann::json to_json() const;
};

struct CompareReport {
  std::size_t compared = 0;
  std::vector<std::string> problems;  ///< one line each, naming the file
  [[nodiscard]] bool ok() const { return problems.empty(); }
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Compares every file under `expected` with the same relative path under `actual`, and reports
/// files that only one side has. Throws a usage error when either folder is missing.
CompareReport compare_folders(const std::filesystem::path& expected,
                              const std::filesystem::path& actual, const CompareTolerance& tol);

/// Logs the report on stderr (a line per problem, then a verdict).
void log_report(const CompareReport& r, const std::filesystem::path& expected,
                const std::filesystem::path& actual);

}  // namespace styleclip
