// The agent's token, shared by the control stream and every session stream it opens. It is
// read from --token-file at start-up and again before each control-stream (re)connect and on
// SIGHUP, so a rotated token (pgwardctl agent rotate) takes effect without a restart.
#pragma once

#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace pgward::agent {

class AgentToken {
 public:
  // `path` empty: a fixed token (tests).
  explicit AgentToken(std::string token, std::string path = "") : token_(std::move(token)), path_(std::move(path)) {}

  std::string Get() const;
  // Reads the file again. On an error (unreadable, empty) the current token stays and the
  // error says why; true in `changed` when the token is a new one. Never logs the token.
  absl::Status Reload(bool* changed = nullptr);

 private:
  mutable absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  const std::string path_;
};

// The token from the text of a token file: surrounding whitespace removed. InvalidArgument if
// nothing is left.
absl::StatusOr<std::string> ParseTokenFile(const std::string& text);

}  // namespace pgward::agent
