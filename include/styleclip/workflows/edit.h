// styleclip/workflows/edit.h — an edit run: inputs (seeds, latent files, photos, folders) through
// any registered engine into outputs, sidecars and a run summary. What `styleclip edit` does,
// callable from any program.
//
// Every input whose sidecar exists is skipped (rerun to resume; `overwrite` redoes them); a shard
// takes its slice of the sorted inputs; Ctrl-C finishes or abandons the current batch and leaves
// no partial file; an input that cannot be used fails alone (the others go on). Outputs per input
// and prompt, under `out/<name>.<prompt-slug>.<engine>`: `.png`, `.latent.pt` or `.styles.pt`,
// `.json` (the sidecar, written last), and `.compare.png`, `.photo.png`, sweeps and frames when
// asked for (docs/cli.md lists them).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <styleclip/engines/engine.h>
#include <styleclip/workflows/batch.h>
#include <styleclip/workflows/photo.h>

namespace styleclip {

struct EditRun {
  std::filesystem::path models;  ///< the bundle folder
  std::string method = "optimize";
  EngineSettings settings;           ///< the engine's own options (EngineInfo::options)
  std::vector<std::string> prompts;  ///< the edits, in words
  std::string prompts_file;          ///< more prompts, one per line ('#' comments)
  // Inputs
  std::vector<std::string> inputs;  ///< photos, latent files and folders of them
  bool recursive = false;
  std::vector<std::string> globs = {"*.pt", "*.npy"};
  std::string seeds;  ///< "N", "N-M" or a list: sampled latents
  double truncation = 0.7;
  std::optional<int64_t> class_index;
  std::string translate;  ///< StyleGAN3: "X,Y", the input transform's shift (inputs.h)
  double rotate = 0;      ///< StyleGAN3: the input transform's turn, degrees
  std::string shard;      ///< "K/N" or "auto" (batch.h)
  bool overwrite = false;
  PhotoOptions photo;
  bool paste_back = true;
  // Outputs and the device
  std::filesystem::path out = "styleclip-out";
  std::string device = "auto";
  std::string precision = "auto";
  int batch = 4;
  bool compare = false;
  bool report = false;  ///< after the run, write `out/index.html` (report.h)
  std::string golden;   ///< after the run, compare `out` with this folder
  int golden_tolerance = 1;
  /// Called with each item's main picture once it is written (the CLI prints it).
  std::function<void(const std::filesystem::path&)> on_output;
  /// The engine's messages (the CLI's logger); empty: stderr.
  std::function<void(LogLevel, const std::string&)> log;
};

/// The run summary (with "golden" when compared) and the exit code: 0, 1 (some inputs failed,
/// or drift from the golden outputs), 130 (interrupted).
using EditReport = BatchReport;

/// Runs the edit. Throws styleclip::Error for what stops the whole run (bad options, an unusable
/// bundle, a single input that cannot be used, out of memory), before any output is written
/// where it can be known in advance.
EditReport run_edit(const EditRun& run);

}  // namespace styleclip
