// The gateway's RFC 8935 push endpoint: POST /ssf/events with a Security Event Token from an
// OpenID Shared Signals transmitter (Okta, Microsoft Entra), verified and acted on.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gateway/events/http_request.h"
#include "gateway/events/security_event.h"
#include "gateway/identity/token_verifier.h"

namespace pgward::events {

inline constexpr char kEventsPath[] = "/ssf/events";

class SecurityEventReceiver {
 public:
  using Verify = std::function<absl::StatusOr<identity::VerifiedSecurityEvent>(std::string_view set)>;
  // Makes a revoking event take effect (the subject's cut-off stored, its sessions ended);
  // returns how many live sessions ended. An error means it did not take effect: the
  // transmitter is told to try again later (503).
  using Revoke = std::function<absl::StatusOr<uint32_t>(const SubjectEvent& event)>;

  SecurityEventReceiver(Verify verify, Revoke revoke, std::function<int64_t()> now_unix = nullptr);

  // The response to one request, as bytes. Blocks (key fetches, the store): call it off the
  // I/O threads. 202 when the SET was verified and every event in it taken in (acted on or
  // ignored, RFC 8935 2.2); 400 with an RFC 8935 2.3 error object when the SET is refused,
  // which changes nothing; 404/405/415 for requests that are not a push.
  std::string Handle(const HttpRequest& request, std::string_view peer);

 private:
  std::string Refuse(const char* err, std::string_view description, std::string_view peer, bool keep_alive);

  const Verify verify_;
  const Revoke revoke_;
  const std::function<int64_t()> now_unix_;
};

}  // namespace pgward::events
