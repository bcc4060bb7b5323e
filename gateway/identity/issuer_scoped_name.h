// How operators name a principal or group of one trusted issuer: "NAME" when the gateway trusts
// one issuer, "ISSUER#NAME" when it trusts several (contract section 2: principals are scoped
// to their issuer).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace pgward::identity {

struct IssuerScopedName {
  std::string issuer;  // exactly one of the trusted issuer URLs
  std::string name;
};

// Parses "NAME" or "ISSUER#NAME". '#' separates because an issuer URL never contains one: it
// has no query or fragment component (OpenID Connect Discovery 1.0 section 3, RFC 8414 section
// 2), while ':' and '/' are part of every URL. So text that starts with http:// or https:// and
// has a '#' is qualified, split at its first '#'; anything else is a bare name. A bare name
// takes the only trusted issuer and is refused (INVALID_ARGUMENT, with an example) when several
// are trusted; a qualified one must name a trusted issuer. The name must pass
// CheckIdentityName. `what` ("--admin-principal", ...) starts every error message.
absl::StatusOr<IssuerScopedName> ParseIssuerScopedName(std::string_view what, std::string_view text,
                                                       const std::vector<std::string>& trusted_issuers);

// "NAME" with one trusted issuer, "ISSUER#NAME" with several: what logs and created_by show.
std::string FormatIssuerScopedName(const std::string& issuer, const std::string& name,
                                   const std::vector<std::string>& trusted_issuers);

// A set of issuer-scoped names (the admin principals or groups).
class IssuerScopedNameSet {
 public:
  // Parses every entry; the first bad one is the error.
  static absl::StatusOr<IssuerScopedNameSet> Parse(std::string_view what, const std::vector<std::string>& entries,
                                                   const std::vector<std::string>& trusted_issuers);
  bool Contains(const std::string& issuer, const std::string& name) const {
    return names_.contains(std::make_pair(issuer, name));
  }
  size_t size() const { return names_.size(); }

 private:
  absl::flat_hash_set<std::pair<std::string, std::string>> names_;
};

}  // namespace pgward::identity
