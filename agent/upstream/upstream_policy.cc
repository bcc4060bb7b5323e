// The agent's local allow-lists for upstream hosts and credential references, and its rules for
// answering password requests (see upstream_policy.h).
#include "agent/upstream/upstream_policy.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pgward::agent {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr absl::string_view kEnvScheme = "agent-env:";
constexpr absl::string_view kFileScheme = "agent-file:";

std::optional<uint32_t> ParseNumber(std::string_view text, uint32_t max) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

std::optional<asio::ip::address> ParseAddress(std::string_view text) {
  asio::error_code ec;
  asio::ip::address address = asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return address;
}

bool IsHostName(std::string_view name) {
  return !name.empty() && name.size() <= 253 && std::all_of(name.begin(), name.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
         });
}

// True when the first `bits` bits of a and b agree (same family).
bool SamePrefix(const asio::ip::address& a, const asio::ip::address& b, int bits) {
  if (a.is_v4() != b.is_v4()) return false;
  std::vector<unsigned char> x, y;
  if (a.is_v4()) {
    auto ab = a.to_v4().to_bytes(), bb = b.to_v4().to_bytes();
    x.assign(ab.begin(), ab.end());
    y.assign(bb.begin(), bb.end());
  } else {
    auto ab = a.to_v6().to_bytes(), bb = b.to_v6().to_bytes();
    x.assign(ab.begin(), ab.end());
    y.assign(bb.begin(), bb.end());
  }
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((x[i] & mask) != (y[i] & mask)) return false;
  }
  return true;
}

// agent-file paths: absolute, and no "", "." or ".." component, so "/etc/pgward/secrets/*"
// cannot be left with "/etc/pgward/secrets/../../shadow" or a doubled slash.
bool IsNormalAbsolutePath(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  for (absl::string_view part : absl::StrSplit(AV(path.substr(1)), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<UpstreamPolicy::HostEntry> UpstreamPolicy::ParseHostEntry(std::string_view entry) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--allow-upstream \"", AV(entry), "\": ", AV(why), " (expected HOST[:PORT], PORT a number or *)"));
  };
  std::string_view host = entry;
  std::optional<std::string_view> port_text;
  if (absl::StartsWith(AV(entry), "[")) {
    const size_t close = entry.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    host = entry.substr(1, close - 1);
    std::string_view after = entry.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after ]");
      port_text = after.substr(1);
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const size_t colon = entry.find(':');
    host = entry.substr(0, colon);
    port_text = entry.substr(colon + 1);
  }  // more than one ':' and no brackets: an IPv6 address without a port

  HostEntry parsed;
  parsed.port = kDefaultPostgresPort;
  if (port_text) {
    if (*port_text == "*") {
      parsed.port.reset();
    } else {
      auto port = ParseNumber(*port_text, 65535);
      if (!port || *port == 0) return bad("bad port");
      parsed.port = *port;
    }
  }
  if (host == "*") {
    parsed.kind = HostEntry::Kind::kAny;
    return parsed;
  }
  if (const size_t slash = host.find('/'); slash != std::string_view::npos) {
    auto address = ParseAddress(host.substr(0, slash));
    if (!address) return bad("a CIDR block needs an IP address before the /");
    auto bits = ParseNumber(host.substr(slash + 1), address->is_v4() ? 32 : 128);
    if (!bits) return bad("bad CIDR prefix length");
    parsed.kind = HostEntry::Kind::kNetwork;
    parsed.address = *address;
    parsed.prefix_bits = static_cast<int>(*bits);
    return parsed;
  }
  if (auto address = ParseAddress(host)) {
    parsed.kind = HostEntry::Kind::kAddress;
    parsed.address = *address;
    return parsed;
  }
  if (!IsHostName(host)) return bad("not a host name, IP address or CIDR block");
  parsed.kind = HostEntry::Kind::kName;
  parsed.name = absl::AsciiStrToLower(AV(host));
  return parsed;
}

absl::StatusOr<UpstreamPolicy> UpstreamPolicy::Create(const Options& options) {
  UpstreamPolicy policy;
  policy.allow_weak_auth_ = options.allow_weak_auth;
  for (const std::string& entry : options.allow_upstream) {
    auto parsed = ParseHostEntry(entry);
    if (!parsed.ok()) return parsed.status();
    policy.upstreams_.push_back(*std::move(parsed));
  }
  for (const std::string& pattern : options.allow_credential) {
    const bool file = absl::StartsWith(pattern, kFileScheme);
    if (!file && !absl::StartsWith(pattern, kEnvScheme)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--allow-credential \"", pattern, "\": must start with agent-env: or agent-file: (gateway: needs no entry)"));
    }
    const size_t star = pattern.find('*');
    if (star != std::string::npos && star != pattern.size() - 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--allow-credential \"", pattern, "\": * is allowed only at the end"));
    }
    if (file && !absl::StartsWith(pattern, "agent-file:/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--allow-credential \"", pattern, "\": agent-file paths must be absolute"));
    }
    policy.credential_patterns_.push_back(pattern);
  }
  return policy;
}

bool UpstreamPolicy::Matches(const HostEntry& entry, std::string_view host, uint32_t port) {
  if (entry.port && *entry.port != port) return false;
  switch (entry.kind) {
    case HostEntry::Kind::kAny:
      return true;
    case HostEntry::Kind::kName:
      return absl::AsciiStrToLower(AV(host)) == entry.name;
    case HostEntry::Kind::kAddress: {
      auto address = ParseAddress(host);
      return address && *address == entry.address;
    }
    case HostEntry::Kind::kNetwork: {
      auto address = ParseAddress(host);
      return address && SamePrefix(*address, entry.address, entry.prefix_bits);
    }
  }
  return false;
}

bool UpstreamPolicy::AllowsUpstream(std::string_view host, uint32_t port) const {
  if (port == 0) port = kDefaultPostgresPort;
  return std::any_of(upstreams_.begin(), upstreams_.end(),
                     [&](const HostEntry& entry) { return Matches(entry, host, port); });
}

bool UpstreamPolicy::AllowsCredential(std::string_view reference) const {
  if (reference.empty() || absl::StartsWith(AV(reference), "gateway:")) return true;
  if (reference.find('\0') != std::string_view::npos) return false;
  if (absl::StartsWith(AV(reference), kFileScheme) &&
      !IsNormalAbsolutePath(reference.substr(kFileScheme.size()))) {
    return false;
  }
  return std::any_of(credential_patterns_.begin(), credential_patterns_.end(), [&](const std::string& pattern) {
    if (!pattern.empty() && pattern.back() == '*') {
      return absl::StartsWith(AV(reference), absl::string_view(pattern.data(), pattern.size() - 1));
    }
    return AV(reference) == pattern;
  });
}

absl::Status UpstreamPolicy::CheckTarget(const pgward::v1::UpstreamTarget& target) const {
  const uint32_t port = target.port() == 0 ? kDefaultPostgresPort : target.port();
  if (upstreams_.empty()) {
    return absl::PermissionDeniedError(
        "this agent was started without --allow-upstream, so it reaches no database; add "
        "--allow-upstream HOST[:PORT] for each database it may serve");
  }
  if (!AllowsUpstream(target.host(), port)) {
    return absl::PermissionDeniedError(absl::StrCat("upstream ", target.host(), ":", port,
                                                    " is not allowed by this agent's --allow-upstream list"));
  }
  if (!AllowsCredential(target.password_ref())) {
    return absl::PermissionDeniedError(absl::StrCat("credential reference \"", target.password_ref(),
                                                    "\" is not allowed by this agent's --allow-credential list"));
  }
  return absl::OkStatus();
}

absl::Status UpstreamPolicy::CheckPasswordRequest(PasswordRequest request, UpstreamTransport transport) const {
  const char* what = request == PasswordRequest::kCleartext ? "a cleartext password" : "an md5 password";
  switch (transport) {
    case UpstreamTransport::kTlsVerified:
      return absl::OkStatus();
    case UpstreamTransport::kTlsUnverified:
      if (allow_weak_auth_) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          "upstream asks for ", what, " over TLS whose certificate is not verified; pgward answers that only "
          "with sslmode=verify-full (or with --allow-weak-upstream-auth on the agent); prefer scram-sha-256 "
          "in pg_hba.conf"));
    case UpstreamTransport::kPlaintext:
      break;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "upstream asks for ", what, " over a connection without TLS; pgward never sends one unencrypted: use "
      "scram-sha-256 in pg_hba.conf, or TLS (sslmode=verify-full)"));
}

}  // namespace pgward::agent
