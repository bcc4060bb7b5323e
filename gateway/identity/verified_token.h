// The identity a caller proved with an access token: what the rest of the gateway acts on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgward::identity {

struct VerifiedToken {
  std::string issuer;                // the token's "iss"; principals are scoped to it
  std::string principal;             // value of the configured principal claim
  std::string subject;               // "sub" (may equal principal)
  std::vector<std::string> groups;   // configured groups claim; empty when absent
  int64_t expires_unix = 0;          // "exp"
  int64_t issued_unix = 0;           // "iat"; 0 when absent (then older than any cut-off)
};

}  // namespace pgward::identity
