// styleclip/io/sha256.h — SHA-256 of files, for the bundle manifest's checksums (FIPS 180-4).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace styleclip {

/// Lower-case hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view bytes);

/// Lower-case hex SHA-256 of a file, streamed in 1 MiB blocks. Throws `Error` (input) when the
/// file cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace styleclip
