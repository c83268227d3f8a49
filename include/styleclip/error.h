// styleclip/error.h — the library's one exception type and the CLI's exit codes.
//
// The library throws `styleclip::Error` with a category; only `main` turns the category into
// an exit code. Messages are lower-case, the offending value
// quoted, the cause after a colon, and a hint for the fix where there is one:
//   cannot read latent 'x.pt': file does not exist
#pragma once

#include <stdexcept>
#include <string>

namespace styleclip {

/// Process exit codes, stable and documented in the README.
enum class ExitCode : int {
  kOk = 0,
  kSomeInputsFailed = 1,
  kUsage = 2,
  kBundleInvalid = 3,
  kInputUnusable = 4,
  kDevice = 5,
  kInterrupted = 130,
};

/// A user-facing failure. `what()` is a complete one-line message.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

/// Shorthands for the common categories.
inline Error usage_error(const std::string& m) { return Error(ExitCode::kUsage, m); }
inline Error bundle_error(const std::string& m) { return Error(ExitCode::kBundleInvalid, m); }
inline Error input_error(const std::string& m) { return Error(ExitCode::kInputUnusable, m); }
inline Error device_error(const std::string& m) { return Error(ExitCode::kDevice, m); }

}  // namespace styleclip
