// Decoder for the untyped first packet of a connection: StartupMessage, SSLRequest,
// GSSENCRequest or CancelRequest (PostgreSQL docs, "Message Formats").
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pgward::pgwire {

struct StartupPacket {
  enum class Kind { kStartup, kSslRequest, kGssEncRequest, kCancelRequest };
  Kind kind = Kind::kStartup;
  uint32_t protocol = 0;                                         // kStartup only
  std::vector<std::pair<std::string, std::string>> parameters;  // kStartup only, in order
  int32_t cancel_pid = 0;                                        // kCancelRequest only
  uint32_t cancel_key = 0;                                       // kCancelRequest only

  // The value of the first parameter called `name`, or "" if absent.
  std::string_view Get(std::string_view name) const;
};

// Returns nullopt when `buf` does not yet hold the whole packet (then *consumed == 0);
// otherwise the packet and *consumed = its length. A length word out of bounds is refused
// as soon as its 4 bytes arrive, without waiting for the rest.
// Errors (InvalidArgument): length < 8 or > kMaxStartupPacketLength, protocol major != 3,
// missing terminator, parameter without value, missing or empty "user", wrong length for
// SSL/GSS/cancel packets.
absl::StatusOr<std::optional<StartupPacket>> DecodeStartupPacket(std::string_view buf,
                                                                size_t* consumed);

}  // namespace pgward::pgwire
