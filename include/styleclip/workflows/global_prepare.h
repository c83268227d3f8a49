// styleclip/workflows/global_prepare.h — style-space statistics and per-channel CLIP directions
// for the global engine, computed into the bundle (docs/algorithms.md §3.2–3.3).
//
// Chunked: after every `chunk` channels a checkpoint (`global_stats.partial.pt` with the sample
// styles beside it) lets `resume` continue exactly where the run stopped — after Ctrl-C, after
// `max_chunks` (a time-limited job), or after a crash. The result is `global_stats.pt`, listed in
// the bundle's manifest with its checksum.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace styleclip {

struct GlobalPrepareRun {
  std::filesystem::path models;  ///< the bundle folder (written into)
  int64_t samples = 100000;      ///< W samples for the style mean/std
  int64_t images = 100;          ///< sample images per channel
  std::string layers;            ///< "0,2,3"; empty: non-toRGB layers up to 128 px
  uint64_t seed = 5;
  std::optional<int64_t> class_index;
  int64_t batch = 0;  ///< renders per generator call; 0: chosen for the device and resolution
  int64_t chunk = 32;
  int64_t max_chunks = 0;  ///< stop after this many chunks (0: run to the end)
  int64_t prefix_cache_mib = 2048;
  bool resume = false;
  std::string device = "auto";
  std::string precision = "auto";
};

struct GlobalPrepareReport {
  int exit_code = 0;           ///< 0, or 130 when stopped with a checkpoint
  std::filesystem::path file;  ///< global_stats.pt (when finished) or the checkpoint
  nlohmann::json section;      ///< what the manifest records (when finished)
  int64_t channels_done = 0, channels = 0;
};

/// Runs (or resumes) the preparation. Throws styleclip::Error for bad options or an unusable
/// bundle.
GlobalPrepareReport prepare_global(const GlobalPrepareRun& run);

}  // namespace styleclip
