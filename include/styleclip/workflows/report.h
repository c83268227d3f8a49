// styleclip/workflows/report.h — `edit --report`: OUT/index.html, a page to look at a batch's
// results instead of reading them: before | after pictures (the compare pictures where written,
// else the results), sweeps and videos, and a table of every sidecar's metrics (CLIP similarity
// before and after, identity, time) that sorts by any column. The page is one HTML file with its
// style and script inside and links to the pictures beside it: no network, no build step; it
// works from the file system and from any static file server.
#pragma once

#include <cstddef>
#include <filesystem>

namespace styleclip {

struct ReportSummary {
  std::filesystem::path file;  ///< OUT/index.html
  std::size_t items = 0;       ///< edit sidecars found
};

/// Reads every edit sidecar below `out` (sub-folders too, so a sharded run into one folder gets
/// one page) and writes `out/index.html` atomically. Sidecars that cannot be read are skipped.
ReportSummary write_edit_report(const std::filesystem::path& out);

}  // namespace styleclip
