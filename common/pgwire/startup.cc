// Decodes the untyped first packet of a connection. Bounds follow the server's
// ProcessStartupPacket (src/backend/tcop/backend_startup.c): length word 8..10000, then a
// request code, then for StartupMessage name/value String pairs ending in one NUL.
#include "common/pgwire/startup.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/pgwire/protocol.h"
#include "common/pgwire/wire_reader.h"

namespace pgward::pgwire {
namespace {

// Debian's Abseil is built with its own string_view type, which StrCat cannot take from a
// std::string_view directly.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// SSLRequest and GSSENCRequest: length word + code, nothing else.
constexpr uint32_t kCodeOnlyPacketLength = 8;
// CancelRequest: length word + code + process id + secret key (protocol 3.0).
constexpr uint32_t kCancelPacketLength = 16;

absl::Status CheckFixedLength(uint32_t len, uint32_t want, std::string_view what) {
  if (len != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid length ", len, " for ", AbslView(what), " (expected ", want, ")"));
  }
  return absl::OkStatus();
}

absl::Status DecodeParameters(std::string_view rest, StartupPacket& packet) {
  // Name/value pairs, then an empty name as terminator, which must be the last byte.
  WireReader reader(rest);
  while (true) {
    std::string_view name, value;
    if (!reader.ReadString(&name)) {
      return absl::InvalidArgumentError("startup packet is missing its terminator");
    }
    if (name.empty()) {
      if (!reader.AtEnd()) {
        return absl::InvalidArgumentError("startup packet has data after its terminator");
      }
      break;
    }
    if (!reader.ReadString(&value)) {
      return absl::InvalidArgumentError("startup packet has a parameter without a value");
    }
    packet.parameters.emplace_back(std::string(name), std::string(value));
  }
  if (packet.Get("user").empty()) {
    return absl::InvalidArgumentError("no user name specified in startup packet");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view StartupPacket::Get(std::string_view name) const {
  for (const auto& [key, value] : parameters) {
    if (key == name) return value;
  }
  return {};
}

absl::StatusOr<std::optional<StartupPacket>> DecodeStartupPacket(std::string_view buf,
                                                                size_t* consumed) {
  *consumed = 0;
  if (buf.size() < 4) return std::nullopt;
  const uint32_t len = LoadUint32(buf.data());
  if (len < kCodeOnlyPacketLength || len > kMaxStartupPacketLength) {
    return absl::InvalidArgumentError(absl::StrCat("invalid startup packet length ", len));
  }
  if (buf.size() < len) return std::nullopt;

  const uint32_t code = LoadUint32(buf.data() + 4);
  StartupPacket packet;
  switch (code) {
    case kSslRequestCode: {
      absl::Status st = CheckFixedLength(len, kCodeOnlyPacketLength, "SSLRequest");
      if (!st.ok()) return st;
      packet.kind = StartupPacket::Kind::kSslRequest;
      break;
    }
    case kGssEncRequestCode: {
      absl::Status st = CheckFixedLength(len, kCodeOnlyPacketLength, "GSSENCRequest");
      if (!st.ok()) return st;
      packet.kind = StartupPacket::Kind::kGssEncRequest;
      break;
    }
    case kCancelRequestCode: {
      absl::Status st = CheckFixedLength(len, kCancelPacketLength, "CancelRequest");
      if (!st.ok()) return st;
      packet.kind = StartupPacket::Kind::kCancelRequest;
      packet.cancel_pid = static_cast<int32_t>(LoadUint32(buf.data() + 8));
      packet.cancel_key = LoadUint32(buf.data() + 12);
      break;
    }
    default: {
      // Any 3.x minor is accepted here, as the server does; it answers newer minors
      // with NegotiateProtocolVersion.
      if ((code >> 16) != 3) {
        return absl::InvalidArgumentError(absl::StrCat("unsupported frontend protocol ",
                                                       code >> 16, ".", code & 0xffff));
      }
      packet.kind = StartupPacket::Kind::kStartup;
      packet.protocol = code;
      absl::Status st = DecodeParameters(buf.substr(8, len - 8), packet);
      if (!st.ok()) return st;
      break;
    }
  }
  *consumed = len;
  return packet;
}

}  // namespace pgward::pgwire
