// Issuer-scoped principal and group names: see issuer_scoped_name.h.
#include "gateway/identity/issuer_scoped_name.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/log.h"
#include "gateway/identity/identity_name.h"

namespace pgward::identity {

absl::StatusOr<IssuerScopedName> ParseIssuerScopedName(std::string_view what, std::string_view text,
                                                       const std::vector<std::string>& trusted_issuers) {
  IssuerScopedName parsed;
  const absl::string_view view = AbslView(text);
  const size_t hash = view.find('#');
  const bool qualified = (absl::StartsWith(view, "https://") || absl::StartsWith(view, "http://")) &&
                         hash != absl::string_view::npos;
  if (qualified) {
    parsed.issuer = std::string(view.substr(0, hash));
    parsed.name = std::string(view.substr(hash + 1));
    if (std::find(trusted_issuers.begin(), trusted_issuers.end(), parsed.issuer) == trusted_issuers.end()) {
      return absl::InvalidArgumentError(absl::StrCat(AbslView(what), " names issuer \"", parsed.issuer.substr(0, 200),
                                                     "\", which is not a trusted --oidc-issuer (trusted: ",
                                                     absl::StrJoin(trusted_issuers, ", "), ")"));
    }
  } else if (trusted_issuers.size() == 1) {
    parsed.issuer = trusted_issuers.front();
    parsed.name = std::string(text);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(what), " \"", view.substr(0, 80), "\" does not say which issuer it belongs to, and ",
        trusted_issuers.size(), " issuers are trusted: write ISSUER#NAME, e.g. \"",
        trusted_issuers.empty() ? std::string("https://idp.example.com") : trusted_issuers.front(), "#",
        view.substr(0, 80), "\""));
  }
  if (absl::Status name = CheckIdentityName(parsed.name); !name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(what), ": the name ", name.message()));
  }
  return parsed;
}

std::string FormatIssuerScopedName(const std::string& issuer, const std::string& name,
                                   const std::vector<std::string>& trusted_issuers) {
  if (trusted_issuers.size() == 1 && trusted_issuers.front() == issuer) return name;
  return absl::StrCat(issuer, "#", name);
}

absl::StatusOr<IssuerScopedNameSet> IssuerScopedNameSet::Parse(std::string_view what,
                                                               const std::vector<std::string>& entries,
                                                               const std::vector<std::string>& trusted_issuers) {
  IssuerScopedNameSet set;
  for (const std::string& entry : entries) {
    absl::StatusOr<IssuerScopedName> parsed = ParseIssuerScopedName(what, entry, trusted_issuers);
    if (!parsed.ok()) return parsed.status();
    set.names_.insert(std::make_pair(std::move(parsed->issuer), std::move(parsed->name)));
  }
  return set;
}

}  // namespace pgward::identity
