#include <styleclip/workflows/compare.h>

#include <styleclip/error.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

namespace styleclip {
namespace fs = std::filesystem;
using nlohmann::json;

nlohmann::json CompareTolerance::to_json() const {
  return {{"pixel_levels", pixel_levels},
          {"min_psnr", min_psnr},
          {"tensor_abs", tensor_abs},
          {"number_abs", number_abs},
          {"ignore", ignore}};
}

nlohmann::json CompareReport::to_json() const {
  return {{"compared", compared}, {"ok", ok()}, {"problems", problems}};
}

namespace {

/// Numbers in reports: `digits` significant digits (or fixed with `fixed`).
std::string fmt(double v, int digits = 3, bool fixed = false) {
  std::ostringstream s;
  if (fixed) s << std::fixed;
  s.precision(digits);
  s << v;
  return s.str();
}

std::set<std::string> relative_files(const fs::path& root) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    const auto rel = e.path().lexically_relative(root).generic_string();
    // Temporaries of an interrupted writer are not outputs.
    if (rel.find(".tmp") != std::string::npos) continue;
    out.insert(rel);
  }
  return out;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void compare_images(const std::string& rel, const fs::path& a, const fs::path& b,
                    const CompareTolerance& tol, std::vector<std::string>& problems) {
  const auto x = read_image_rgb(a).to(torch::kInt32);
  const auto y = read_image_rgb(b).to(torch::kInt32);
  if (x.sizes() != y.sizes()) {
    problems.push_back(rel + ": image size differs (" + std::to_string(x.size(1)) + "x" +
                       std::to_string(x.size(0)) + " expected, " + std::to_string(y.size(1)) + "x" +
                       std::to_string(y.size(0)) + " found)");
    return;
  }
  const auto diff = (x - y).abs();
  const int max_diff = diff.max().item<int>();
  if (max_diff == 0) return;
  const double mse = diff.to(torch::kFloat64).pow(2).mean().item<double>();
  const double psnr = 10.0 * std::log10(255.0 * 255.0 / mse);
  if (max_diff > tol.pixel_levels || psnr < tol.min_psnr) {
    const auto changed = (diff > tol.pixel_levels).any(2).sum().item<int64_t>();
    problems.push_back(rel + ": image differs by up to " + std::to_string(max_diff) +
                       " levels (tolerance " + std::to_string(tol.pixel_levels) + "), PSNR " +
                       fmt(psnr, 1, true) + " dB (minimum " + fmt(tol.min_psnr, 1, true) + "), " +
                       std::to_string(changed) + " pixels beyond tolerance");
  }
}

void compare_tensors(const std::string& rel, const fs::path& a, const fs::path& b,
                     const CompareTolerance& tol, std::vector<std::string>& problems) {
  // A .pt output holds one tensor (latents) or a list of them (styles).
  const auto load = [](const fs::path& p) {
    try {
      return std::vector<torch::Tensor>{read_tensor_file(p)};
    } catch (const Error&) {
      return read_tensor_list_pt(p);
    }
  };
  const auto x = load(a);
  const auto y = load(b);
  if (x.size() != y.size()) {
    problems.push_back(rel + ": holds " + std::to_string(y.size()) + " tensors, expected " +
                       std::to_string(x.size()));
    return;
  }
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].sizes() != y[i].sizes()) {
      std::ostringstream s;
      s << rel << ": tensor " << i << " has shape " << y[i].sizes() << ", expected "
        << x[i].sizes();
      problems.push_back(s.str());
      return;
    }
    if (x[i].numel() == 0) continue;
    const auto d = (x[i].to(torch::kFloat64) - y[i].to(torch::kFloat64)).abs().max();
    worst = std::max(worst, d.item<double>());
  }
  if (!(worst <= tol.tensor_abs)) {
    problems.push_back(rel + ": tensors differ by up to " + fmt(worst) + " (tolerance " +
                       fmt(tol.tensor_abs) + ")");
  }
}

// Fields of a sidecar that change from run to run or machine to machine.
bool volatile_key(const std::string& k) {
  static const std::set<std::string> keys = {"created", "timing", "dir",    "version",
                                             "device",  "batch",  "threads"};
  return keys.count(k) > 0;
}

// Values that are file paths: only the file name must match.
bool path_key(const std::string& k) {
  static const std::set<std::string> keys = {"latent", "mapper",  "target_image", "neutral_image",
                                             "image",  "compare", "styles"};
  return keys.count(k) > 0;
}

void compare_json(const std::string& where, const std::string& key_path, const json& x,
                  const json& y, const CompareTolerance& tol, std::vector<std::string>& problems) {
  if (tol.ignore.count(key_path) > 0) return;
  if (x.is_number() && y.is_number()) {
    const double a = x.get<double>();
    const double b = y.get<double>();
    if (!(std::fabs(a - b) <= tol.number_abs) && !(std::isnan(a) && std::isnan(b))) {
      problems.push_back(where + " is " + fmt(b, 6) + ", expected " + fmt(a, 6) + " (tolerance " +
                         fmt(tol.number_abs) + ")");
    }
    return;
  }
  if (x.type() != y.type()) {
    problems.push_back(where + " is " + y.dump() + ", expected " + x.dump());
    return;
  }
  if (x.is_object()) {
    for (const auto& [k, v] : x.items()) {
      if (volatile_key(k)) continue;
      const auto key = where + "." + k;
      const auto path = key_path.empty() ? k : key_path + "." + k;
      if (!y.contains(k)) {
        problems.push_back(key + " is missing");
      } else if (path_key(k) && v.is_string() && y[k].is_string()) {
        if (fs::path(v.get<std::string>()).filename() !=
            fs::path(y[k].get<std::string>()).filename()) {
          problems.push_back(key + " is " + y[k].dump() + ", expected " + v.dump());
        }
      } else {
        compare_json(key, path, v, y[k], tol, problems);
      }
    }
    for (const auto& [k, v] : y.items()) {
      if (!volatile_key(k) && !x.contains(k))
        problems.push_back(where + "." + k + " is unexpected");
    }
    return;
  }
  if (x.is_array()) {
    if (x.size() != y.size()) {
      problems.push_back(where + " has " + std::to_string(y.size()) + " entries, expected " +
                         std::to_string(x.size()));
      return;
    }
    for (size_t i = 0; i < x.size(); ++i) {
      compare_json(where + "[" + std::to_string(i) + "]", key_path, x[i], y[i], tol, problems);
    }
    return;
  }
  if (x != y) problems.push_back(where + " is " + y.dump() + ", expected " + x.dump());
}

json parse_json_file(const fs::path& p) {
  try {
    return json::parse(read_bytes(p));
  } catch (const json::exception& e) {
    throw input_error("cannot read '" + p.string() + "': not valid JSON (" + e.what() + ")");
  }
}

}  // namespace

CompareReport compare_folders(const fs::path& expected, const fs::path& actual,
                              const CompareTolerance& tol) {
  for (const auto& [dir, what] : {std::pair{expected, "expected"}, std::pair{actual, "actual"}}) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      throw usage_error("cannot compare: " + std::string(what) + " folder '" + dir.string() +
                        "' does not exist or is not a folder");
    }
  }
  CompareReport r;
  const auto xs = relative_files(expected);
  const auto ys = relative_files(actual);
  for (const auto& rel : xs) {
    if (ys.count(rel) == 0) {
      r.problems.push_back(rel + ": missing (expected from '" + expected.string() + "')");
      continue;
    }
    ++r.compared;
    const auto a = expected / rel;
    const auto b = actual / rel;
    const auto ext = fs::path(rel).extension().string();
    try {
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") {
        compare_images(rel, a, b, tol, r.problems);
      } else if (ext == ".pt") {
        compare_tensors(rel, a, b, tol, r.problems);
      } else if (ext == ".json") {
        compare_json(rel, "", parse_json_file(a), parse_json_file(b), tol, r.problems);
      } else if (ext == ".mp4") {
        // Encoders differ between OpenCV builds; the frames beside the video are compared.
      } else if (read_bytes(a) != read_bytes(b)) {
        r.problems.push_back(rel + ": contents differ");
      }
    } catch (const Error& e) {
      r.problems.push_back(rel + ": " + e.what());
    }
  }
  for (const auto& rel : ys) {
    if (xs.count(rel) == 0)
      r.problems.push_back(rel + ": unexpected (not in '" + expected.string() + "')");
  }
  return r;
}

void log_report(const CompareReport& r, const fs::path& expected, const fs::path& actual) {
  for (const auto& p : r.problems) spdlog::error("drift: {}", p);
  if (r.ok()) {
    spdlog::info("'{}' matches '{}': {} files compared", actual.string(), expected.string(),
                 r.compared);
  } else {
    spdlog::error("'{}' differs from '{}': {} problem(s) in {} files compared", actual.string(),
                  expected.string(), r.problems.size(), r.compared);
  }
}

}  // namespace styleclip
