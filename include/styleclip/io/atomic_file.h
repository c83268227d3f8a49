// styleclip/io/atomic_file.h — writing outputs so that no reader ever sees half a file.
//
// Every output goes to a temporary name in the same folder and is renamed over the final name
// once complete (rename is atomic within a filesystem). On any failure the temporary is removed.
#pragma once

#include <filesystem>
#include <functional>
#include <string_view>

namespace styleclip {

/// Writes `bytes` to `path` atomically. Throws `Error` (usage: the output path is the user's
/// option) naming the path when the folder is missing or not writable.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// Calls `writer(tmp_path)` to produce the file under a temporary name, then renames it to
/// `path`. For writers that insist on a path of their own (OpenCV's imwrite, torch::save).
void write_via_temp(const std::filesystem::path& path,
                    const std::function<void(const std::filesystem::path&)>& writer);

/// Creates `dir` (and parents) for outputs; a clear usage error when that is impossible.
void ensure_output_dir(const std::filesystem::path& dir);

}  // namespace styleclip
