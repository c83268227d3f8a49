// bench_support.h — small helpers shared by the benchmarks.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <styleclip/models/bundle.h>
#include <styleclip/runtime.h>

/// Bytes as MiB for the JSON output; null when unknown (negative: no CUDA statistics, the CPU).
inline nlohmann::json megabytes(int64_t bytes) {
  return bytes >= 0 ? nlohmann::json(double(bytes) / 1048576.0) : nlohmann::json(nullptr);
}

/// "--flag value" pairs from the command line, in order:
///   for (BenchArgs a(argc, argv); a.next();) { if (a.is("--x")) x = a.value(); else a.unknown(); }
class BenchArgs {
 public:
  BenchArgs(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() { return ++i_ < argc_; }
  [[nodiscard]] bool is(const char* flag) const { return flag_() == flag; }
  std::string value() {
    if (i_ + 1 >= argc_) throw std::invalid_argument("missing value for " + flag_());
    return argv_[++i_];
  }
  [[noreturn]] void unknown() const { throw std::invalid_argument("unknown option " + flag_()); }

 private:
  [[nodiscard]] std::string flag_() const { return argv_[i_]; }
  int argc_;
  char** argv_;
  int i_ = 0;
};

/// What every benchmark is given and starts with: --models, --threads, --device, --precision.
struct BenchCommon {
  std::string models;
  int threads = 0;
  std::string device = "cpu";
  std::string precision = "fp32";

  /// Takes the current flag of `a` when it is one of the four; false otherwise.
  bool take(BenchArgs& a) {
    if (a.is("--models")) {
      models = a.value();
    } else if (a.is("--threads")) {
      threads = std::stoi(a.value());
    } else if (a.is("--device")) {
      device = a.value();
    } else if (a.is("--precision")) {
      precision = a.value();
    } else {
      return false;
    }
    return true;
  }

  struct Setup {
    styleclip::Bundle bundle;
    torch::Device device;
    styleclip::Precision precision;
  };
  /// Sets the threads, opens the bundle and reads the device and precision.
  [[nodiscard]] Setup open() const {
    if (models.empty()) throw std::invalid_argument("--models DIR is required");
    styleclip::configure_runtime(threads);
    auto bundle = styleclip::Bundle::open(models);
    const auto dev = styleclip::parse_device(device);
    return {std::move(bundle), dev, styleclip::parse_precision(precision, dev)};
  }
};
