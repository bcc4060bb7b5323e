// Resolves a connection's password reference on the agent side; the secret never leaves it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

// agent-env:VAR reads the agent's environment, agent-file:/path reads a file (trailing
// newline trimmed), gateway: uses the value the gateway decrypted and sent in the grant.
// Errors name the reference, never the secret.
absl::StatusOr<std::string> ResolveCredential(const pgward::v1::UpstreamTarget& target);

}  // namespace pgward::agent
