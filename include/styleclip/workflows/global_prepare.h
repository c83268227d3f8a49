// styleclip/workflows/global_prepare.h — style-space statistics and per-channel CLIP directions
// for the global engine, computed into the bundle (docs/algorithms.md §3.2–3.3).
//
// Chunked: after every `chunk` channels a checkpoint (`global_stats.partial.pt` with the sample
// styles beside it) lets `resume` continue exactly where the run stopped — after Ctrl-C, after
// `max_chunks` (a time-limited job), or after a crash. The result is `global_stats.pt`, listed in
// the bundle's manifest with its checksum.
//
// On many machines: the channels are cut into chunks in a fixed order (layer by layer, `chunk`
// channels each), and `shard` K/N computes the K-th of N contiguous, balanced runs of chunks
// into `global_stats.shard-K-of-N.pt` (with its own checkpoint). Every shard computes the same
// style statistics from the same seed. `merge_global_shards` checks that all N shards are there,
// were made with the same options and statistics and cover every channel once, and writes
// `global_stats.pt` — bit for bit what one machine would have written on the same kind of device
// with the same thread count, because every chunk is the same computation either way.
#pragma once

#include <cstddef>
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
  int64_t batch = 0;       ///< renders per generator call; 0: chosen for the device and resolution
  int64_t chunk = 32;      ///< channels between checkpoints; also the unit shards are made of
  std::string shard;       ///< "K/N" or "auto" (batch.h: parse_shard); empty: every channel
  int64_t max_chunks = 0;  ///< stop after this many chunks (0: run to the end)
  int64_t prefix_cache_mib = 2048;
  bool resume = false;
  std::string device = "auto";
  std::string precision = "auto";
};

struct GlobalPrepareReport {
  int exit_code = 0;           ///< 0, or 130 when stopped with a checkpoint
  std::filesystem::path file;  ///< global_stats.pt or a shard's file (finished), or the checkpoint
  nlohmann::json section;      ///< what the manifest records (finished, whole or merged)
  int64_t channels_done = 0, channels = 0;  ///< of this run's share (a shard's rows)
  std::size_t shard_index = 1, shard_count = 1;
};

/// Runs (or resumes) the preparation. Throws styleclip::Error for bad options or an unusable
/// bundle.
GlobalPrepareReport prepare_global(const GlobalPrepareRun& run);

/// Joins the finished shards in `models` into `global_stats.pt` (listed in the manifest) and
/// removes them. An input error names what is missing (the shards not there or unfinished) or
/// inconsistent (other options, other statistics, another shard count, rows that do not join).
GlobalPrepareReport merge_global_shards(const std::filesystem::path& models);

}  // namespace styleclip
