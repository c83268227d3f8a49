// Private to the engines: the seconds a batch took, for their timing records.
#pragma once

#include <chrono>

namespace styleclip {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace styleclip
