// AgentToken: see agent_token.h.
#include "agent/control/agent_token.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/tls_material.h"

namespace pgward::agent {

absl::StatusOr<std::string> ParseTokenFile(const std::string& text) {
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) return absl::InvalidArgumentError("the token file is empty");
  return token;
}

std::string AgentToken::Get() const {
  absl::MutexLock lock(&mu_);
  return token_;
}

absl::Status AgentToken::Reload(bool* changed) {
  if (changed != nullptr) *changed = false;
  if (path_.empty()) return absl::OkStatus();
  auto text = crypto::ReadFileToString(path_, 4096);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("cannot read --token-file: ", text.status().message()));
  auto token = ParseTokenFile(*text);
  if (!token.ok()) return token.status();
  absl::MutexLock lock(&mu_);
  if (changed != nullptr) *changed = *token != token_;
  token_ = *std::move(token);
  return absl::OkStatus();
}

}  // namespace pgward::agent
