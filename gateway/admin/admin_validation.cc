// AdminService input checks: see admin_validation.h.
#include "gateway/admin/admin_validation.h"

#include <algorithm>
#include <array>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gateway/identity/identity_name.h"

namespace pgward::admin {
namespace {

constexpr std::array<absl::string_view, 10> kStatementClasses = {
    "read", "write", "ddl", "transaction", "session", "copy_in", "copy_out", "privilege", "maintenance",
    "procedure"};
constexpr std::array<absl::string_view, 4> kSslModes = {"disable", "prefer", "require", "verify-full"};

// Postgres identifiers are at most NAMEDATALEN-1 = 63 bytes.
constexpr size_t kMaxIdentifier = 63;
constexpr size_t kMaxHost = 253;  // a DNS name (RFC 1035 section 2.3.4)
constexpr size_t kMaxText = 1024;
constexpr uint32_t kMaxSessionsPerGrant = 100000;
constexpr size_t kMaxReason = 500;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool HasControlOrSpace(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status ValidateText(absl::string_view field, absl::string_view value, size_t max) {
  if (value.empty()) return Invalid(absl::StrCat(field, " is required"));
  if (value.size() > max) return Invalid(absl::StrCat(field, " is longer than ", max, " bytes"));
  if (HasControlOrSpace(value)) return Invalid(absl::StrCat(field, " must not contain spaces or control characters"));
  return absl::OkStatus();
}

absl::Status ValidateClasses(absl::string_view field, const google::protobuf::RepeatedPtrField<std::string>& classes) {
  for (const std::string& c : classes) {
    if (!IsStatementClass(c)) {
      return Invalid(absl::StrCat(field, ": unknown statement class \"", c, "\"; expected one of ",
                                  absl::StrJoin(kStatementClasses, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateName(absl::string_view kind, absl::string_view name) {
  if (name.empty() || name.size() > kMaxIdentifier || !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return Invalid(absl::StrCat(kind, " name \"", name.substr(0, 80),
                                "\" is invalid: use 1 to 63 characters from A-Z a-z 0-9 _ . -"));
  }
  return absl::OkStatus();
}

bool IsGatewayPasswordRef(absl::string_view ref) { return ref == "gateway:"; }

absl::Status ValidatePasswordRef(absl::string_view ref) {
  constexpr char kHelp[] = "; expected agent-env:VAR, agent-file:/absolute/path or gateway:";
  if (IsGatewayPasswordRef(ref)) return absl::OkStatus();
  if (absl::ConsumePrefix(&ref, "agent-env:")) {
    const bool valid = !ref.empty() && ref.size() <= kMaxText &&
                       std::all_of(ref.begin(), ref.end(), [](char c) { return IsNameChar(c) && c != '.' && c != '-'; }) &&
                       !(ref[0] >= '0' && ref[0] <= '9');
    if (!valid) return Invalid(absl::StrCat("password_ref: invalid environment variable name \"", ref.substr(0, 80), "\"", kHelp));
    return absl::OkStatus();
  }
  if (absl::ConsumePrefix(&ref, "agent-file:")) {
    if (ref.empty() || ref[0] != '/' || ref.size() > kMaxText || HasControlOrSpace(ref)) {
      return Invalid(absl::StrCat("password_ref: agent-file needs an absolute path", kHelp));
    }
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("password_ref \"", ref.substr(0, 80), "\" is not recognized", kHelp));
}

absl::Status ValidateConnection(const pgward::v1::Connection& c) {
  if (absl::Status s = ValidateName("connection", c.name()); !s.ok()) return s;
  if (absl::Status s = ValidateName("agent", c.agent()); !s.ok()) return s;
  if (absl::Status s = ValidateText("host", c.host(), kMaxHost); !s.ok()) return s;
  if (c.port() < 1 || c.port() > 65535) return Invalid(absl::StrCat("port ", c.port(), " is out of range 1..65535"));
  if (absl::Status s = ValidateText("database", c.database(), kMaxIdentifier); !s.ok()) return s;
  if (absl::Status s = ValidateText("user", c.user(), kMaxIdentifier); !s.ok()) return s;
  if (absl::Status s = ValidatePasswordRef(c.password_ref()); !s.ok()) return s;
  if (std::find(kSslModes.begin(), kSslModes.end(), c.sslmode()) == kSslModes.end()) {
    return Invalid(absl::StrCat("sslmode \"", c.sslmode().substr(0, 40), "\" is invalid; expected one of ",
                                absl::StrJoin(kSslModes, ", ")));
  }
  if (!c.ca_file().empty() && (c.ca_file()[0] != '/' || c.ca_file().size() > kMaxText || HasControlOrSpace(c.ca_file()))) {
    return Invalid("ca_file must be an absolute path on the agent's machine");
  }
  return absl::OkStatus();
}

bool IsStatementClass(absl::string_view name) {
  return std::find(kStatementClasses.begin(), kStatementClasses.end(), name) != kStatementClasses.end();
}

absl::Status ValidateGrant(const pgward::v1::Grant& g, int64_t now_unix_ms) {
  if (g.principal().empty() == g.group().empty()) return Invalid("a grant names exactly one of principal or group");
  const bool by_principal = !g.principal().empty();
  const absl::string_view kind = by_principal ? "principal" : "group";
  const std::string& who = by_principal ? g.principal() : g.group();
  if (absl::Status s = ValidateText(kind, who, kMaxText); !s.ok()) return s;
  // The same rule the gateway applies to names in tokens: a grant for a name no token can
  // carry would be dead weight, or worse, look like it covers someone.
  if (absl::Status s = identity::CheckIdentityName(who); !s.ok()) return Invalid(absl::StrCat(kind, " ", s.message()));
  if (!g.issuer().empty()) {
    if (absl::Status s = ValidateText("issuer", g.issuer(), kMaxText); !s.ok()) return s;
    if (!absl::StartsWith(g.issuer(), "https://") && !absl::StartsWith(g.issuer(), "http://")) {
      return Invalid("issuer must be the issuer URL (https://...) as in the token's iss claim");
    }
  }
  if (absl::Status s = ValidateName("connection", g.connection()); !s.ok()) return s;
  const pgward::v1::Policy& p = g.policy();
  switch (p.mode()) {
    case pgward::v1::MODE_READ_ONLY:
    case pgward::v1::MODE_READ_WRITE:
      if (p.statement_classes_size() > 0) {
        return Invalid("statement classes are only accepted with mode classes (MODE_STATEMENT_CLASSES)");
      }
      break;
    case pgward::v1::MODE_STATEMENT_CLASSES:
      if (p.statement_classes_size() == 0) return Invalid("mode classes needs at least one statement class");
      if (absl::Status s = ValidateClasses("statement_classes", p.statement_classes()); !s.ok()) return s;
      break;
    default:
      return Invalid("mode is required: read-only, read-write or classes");
  }
  for (const pgward::v1::ReviewRule& rule : p.review_rules()) {
    if (absl::Status s = ValidateClasses("review rule", rule.statement_classes()); !s.ok()) return s;
  }
  if (g.expires_unix_ms() < 0 || (g.expires_unix_ms() != 0 && g.expires_unix_ms() <= now_unix_ms)) {
    return Invalid("expiry must be in the future");
  }
  if (p.limits().max_sessions() > kMaxSessionsPerGrant) {
    return Invalid(absl::StrCat("max sessions must be at most ", kMaxSessionsPerGrant));
  }
  return absl::OkStatus();
}

absl::Status ResolveIssuer(std::string& issuer, const std::vector<std::string>& trusted_issuers) {
  if (issuer.empty()) {
    if (trusted_issuers.size() == 1) {
      issuer = trusted_issuers.front();
      return absl::OkStatus();
    }
    return Invalid(absl::StrCat("the gateway trusts ", trusted_issuers.size(),
                                " issuers; name the principal's or group's issuer with --issuer (one of: ",
                                absl::StrJoin(trusted_issuers, ", "), ")"));
  }
  if (std::find(trusted_issuers.begin(), trusted_issuers.end(), issuer) == trusted_issuers.end()) {
    return Invalid(absl::StrCat("issuer \"", issuer.substr(0, 200), "\" is not trusted by the gateway (trusted: ",
                                absl::StrJoin(trusted_issuers, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::Status ResolveGrantIssuer(pgward::v1::Grant& g, const std::vector<std::string>& trusted_issuers) {
  return ResolveIssuer(*g.mutable_issuer(), trusted_issuers);
}

absl::Status ValidateSubject(const std::string& principal, const std::string& group) {
  if (principal.empty() == group.empty()) return Invalid("name exactly one of a principal or a group (--group G)");
  const bool by_principal = !principal.empty();
  const absl::string_view kind = by_principal ? "principal" : "group";
  const std::string& who = by_principal ? principal : group;
  if (absl::Status s = ValidateText(kind, who, kMaxText); !s.ok()) return s;
  if (absl::Status s = identity::CheckIdentityName(who); !s.ok()) return Invalid(absl::StrCat(kind, " ", s.message()));
  return absl::OkStatus();
}

absl::Status ValidateReason(absl::string_view reason) {
  if (reason.size() > kMaxReason) return Invalid(absl::StrCat("reason is longer than ", kMaxReason, " bytes"));
  // It is written to the gateway log and shown in tables: one line, no terminal control.
  const bool control = std::any_of(reason.begin(), reason.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (control) return Invalid("reason must not contain control characters (newlines, tabs, escapes)");
  return absl::OkStatus();
}

}  // namespace pgward::admin
