// bench_support.h — small helpers shared by the benchmarks.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

/// Bytes as MiB for the JSON output; null when unknown (negative: no CUDA statistics, the CPU).
inline nlohmann::json megabytes(int64_t bytes) {
  return bytes >= 0 ? nlohmann::json(double(bytes) / 1048576.0) : nlohmann::json(nullptr);
}

#include <stdexcept>
#include <string>

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
