// bench_support.h — small helpers shared by the benchmarks.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

/// Bytes as MiB for the JSON output; null when unknown (negative: no CUDA statistics, the CPU).
inline nlohmann::json megabytes(int64_t bytes) {
  return bytes >= 0 ? nlohmann::json(double(bytes) / 1048576.0) : nlohmann::json(nullptr);
}
