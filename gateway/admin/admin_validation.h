// Input checks for AdminService requests. Each returns INVALID_ARGUMENT with a message that
// names the field and what is accepted, so pgwardctl can show it as is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "pgward/v1/types.pb.h"

namespace pgward::admin {

// Agent and connection names: [A-Za-z0-9_.-]{1,63}. The connection name is the caller's
// dbname (contract section 2), so it must be a plain identifier.
absl::Status ValidateName(absl::string_view kind, absl::string_view name);
// agent-env:VAR (VAR = [A-Za-z_][A-Za-z0-9_]*), agent-file:/absolute/path, or gateway:.
absl::Status ValidatePasswordRef(absl::string_view ref);
bool IsGatewayPasswordRef(absl::string_view ref);
// Every field of a connection except the password value, which the service checks against
// password_ref.
absl::Status ValidateConnection(const pgward::v1::Connection& c);
// read, write, ddl, transaction, session, copy_in, copy_out, privilege, maintenance, procedure.
bool IsStatementClass(absl::string_view name);
// Exactly one of principal/group, a name a token could carry (identity_name.h); mode set;
// statement classes valid iff MODE_STATEMENT_CLASSES; expiry (if any) after now; max_sessions
// at most 100000.
absl::Status ValidateGrant(const pgward::v1::Grant& g, int64_t now_unix_ms);
// Principals are (issuer, name) (contract section 2). With one trusted issuer a grant without
// one gets it; with several the grant must name one. Either way it must be trusted.
// INVALID_ARGUMENT says which issuers are trusted.
absl::Status ResolveGrantIssuer(pgward::v1::Grant& g, const std::vector<std::string>& trusted_issuers);
// The same for any issuer field: fills in the single trusted issuer, or checks the one given.
absl::Status ResolveIssuer(std::string& issuer, const std::vector<std::string>& trusted_issuers);
// Who a revocation names: exactly one of principal or group, each a name a token could carry.
absl::Status ValidateSubject(const std::string& principal, const std::string& group);
// A revocation's reason: optional, at most 500 bytes, no control characters.
absl::Status ValidateReason(absl::string_view reason);

}  // namespace pgward::admin
