// What this agent host lets a session reach and read, decided locally from the agent's own
// flags: upstream hosts, credential references, and which password requests it answers.
// A gateway (or whoever controls it) can name any connection; it cannot widen this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/ip/address.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

inline constexpr uint32_t kDefaultPostgresPort = 5432;

// How the upstream connection is protected, for the password rules below.
enum class UpstreamTransport {
  kPlaintext,      // sslmode=disable, or prefer and the server declined TLS
  kTlsUnverified,  // TLS without certificate checks (sslmode prefer/require/verify-ca here)
  kTlsVerified,    // sslmode=verify-full: chain and host name checked
};

// The password request codes of AuthenticationXXX (protocol section 55.2.1), by name.
enum class PasswordRequest { kCleartext, kMd5 };

class UpstreamPolicy {
 public:
  struct Options {
    // --allow-upstream HOST[:PORT]: HOST is a DNS name (matched as written, case-insensitive),
    // an IP address (matched as an address), a CIDR block such as 10.0.0.0/8 or [fd00::/8]
    // (matches connections whose host is an IP address inside it; names are not resolved for
    // the check), or * (any host). PORT is a number or * (any port); no PORT means 5432.
    // IPv6 addresses with a port go in brackets: [::1]:5432.
    std::vector<std::string> allow_upstream;
    // --allow-credential PATTERN: an agent-env: or agent-file: reference, exact or ending in
    // one * that matches any rest (agent-env:SHOP_*, agent-file:/etc/pgward/secrets/*).
    std::vector<std::string> allow_credential;
    // --allow-weak-upstream-auth: answer md5 and cleartext password requests over TLS that is
    // not verified (never over plaintext).
    bool allow_weak_auth = false;
  };

  // InvalidArgument naming the bad entry and its flag.
  static absl::StatusOr<UpstreamPolicy> Create(const Options& options);

  // OK, or PermissionDenied whose message names the host/port or reference and the flag that
  // would allow it (for the agent log only: it names paths and variables).
  absl::Status CheckTarget(const pgward::v1::UpstreamTarget& target) const;
  bool AllowsUpstream(std::string_view host, uint32_t port) const;
  // gateway: (and an empty reference, for trust/peer) need no entry: the agent reads nothing
  // locally for them. agent-file paths must be absolute with no "." or ".." parts, so a
  // pattern's directory cannot be left.
  bool AllowsCredential(std::string_view reference) const;
  bool allows_no_upstream() const { return upstreams_.empty(); }

  // OK or FailedPrecondition (a message for the caller) for answering `request` over
  // `transport`: verified TLS always; unverified TLS only with allow_weak_auth; plaintext
  // never (a spoofed or sniffing server would learn the password or a crackable hash).
  // SCRAM-SHA-256 needs no check: it proves knowledge of the password without revealing it.
  absl::Status CheckPasswordRequest(PasswordRequest request, UpstreamTransport transport) const;

 private:
  struct HostEntry {
    enum class Kind { kAny, kName, kAddress, kNetwork };
    Kind kind = Kind::kName;
    std::string name;        // kName, lower case
    asio::ip::address address;  // kAddress, kNetwork
    int prefix_bits = 0;     // kNetwork
    std::optional<uint32_t> port;  // nullopt: any port
  };
  static absl::StatusOr<HostEntry> ParseHostEntry(std::string_view entry);
  static bool Matches(const HostEntry& entry, std::string_view host, uint32_t port);

  std::vector<HostEntry> upstreams_;
  std::vector<std::string> credential_patterns_;
  bool allow_weak_auth_ = false;
};

}  // namespace pgward::agent
