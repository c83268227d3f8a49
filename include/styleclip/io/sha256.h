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

/// Whether this CPU's SHA instructions compute the hashes above (else portable C++).
bool sha256_uses_cpu_instructions();

/// sha256_hex with the portable code whatever the CPU has (for the tests that compare the two).
std::string sha256_hex_portable(std::string_view bytes);

}  // namespace styleclip
