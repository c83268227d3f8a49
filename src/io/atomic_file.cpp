#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <system_error>

namespace styleclip {
namespace fs = std::filesystem;

namespace {

fs::path temp_name(const fs::path& path) {
  // Hidden, unique per process, same folder: the rename stays on one filesystem.
  return path.parent_path() / ("." + path.filename().string() + ".tmp" +
                               std::to_string(::getpid()) + path.extension().string());
}

}  // namespace

void ensure_output_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw usage_error("cannot create output folder '" + dir.string() +
                      "': " + (ec ? ec.message() : std::string("not a directory")) +
                      " (choose another --out)");
  }
}

void write_via_temp(const fs::path& path, const std::function<void(const fs::path&)>& writer) {
  const fs::path tmp = temp_name(path);
  try {
    writer(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw usage_error("cannot write '" + path.string() + "': " + ec.message());
  }
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  write_via_temp(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw usage_error("cannot write '" + path.string() + "': cannot create file");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw usage_error("cannot write '" + path.string() + "': write failed (disk full?)");
  });
}

}  // namespace styleclip
