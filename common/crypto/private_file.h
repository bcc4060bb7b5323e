// Creation of private directories and atomic writes of key and certificate files.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pgward::crypto {

// Creates `dir` and any missing parents with mode 0700. Existing directories keep their mode.
absl::Status CreatePrivateDirectories(const std::string& dir);

// Writes `content` to a temporary file (created with `mode`, fsynced) next to `path`, then moves it into
// place so readers never see a partial file. With overwrite=false an existing `path` wins and the call
// returns AlreadyExists: two processes creating the same key file cannot end up with different keys.
absl::Status WriteFileAtomically(const std::string& path, std::string_view content, mode_t mode, bool overwrite);

}  // namespace pgward::crypto
