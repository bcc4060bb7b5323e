// The settings the agent fixes at upstream login (identity, read-only mode, how Postgres lexes
// SQL) and the watch that ends a session when Postgres reports one of them changed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

// The StartupMessage parameters after user and database, in order: application_name
// "pgward:<principal>", options with the pinned settings, then the caller's parameters that pass
// the shared allow-list (pgwire::FilterStartupParameters, applied again here: the agent never
// trusts what it is sent). Pinned in options (Postgres applies "options" first, then the other
// parameters, which is why no allow-listed name may touch these):
//   pgward.principal, pgward.session_id, default_transaction_read_only=on (read-only grants),
//   standard_conforming_strings=on, backslash_quote=safe_encoding, and client_encoding = the
//   caller's if it is ASCII-safe, else UTF8 when none was asked for.
// With these, a backslash in an ordinary string literal is an ordinary character for Postgres
// and for pgward's parser alike. InvalidArgument (safe to show) for a refused parameter.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> UpstreamStartupParameters(
    const pgward::v1::SessionGrant& grant);

// The statement that gives a reused upstream connection this session's pgward.session_id (the
// login's start-up packet carried the id of the session that opened it). A literal, quoted for
// standard_conforming_strings=on, which is pinned.
std::string SessionIdSetting(std::string_view session_id);

// The statement that gives a live session's upstream connection the default_transaction_read_only
// of its (changed) policy: on for a read-only grant, off otherwise.
std::string ReadOnlySetting(bool read_only);

// Why a reported setting change ends a session (the SessionEnded reason).
inline constexpr std::string_view kIdentityChanged = "identity_changed";
inline constexpr std::string_view kLexingSettingChanged = "lexing_setting_changed";

struct SettingChange {
  std::string end_reason;  // kIdentityChanged or kLexingSettingChanged
  std::string message;     // for the caller's FATAL 57P01
};

// Postgres sends ParameterStatus whenever a GUC_REPORT setting changes, whoever changed it: a SET
// the policy saw, or set_config() inside a function or DO block it could not see. The watched
// ones must keep their login values for the whole session: application_name and
// session_authorization / is_superuser (who the session is), client_encoding and
// standard_conforming_strings (how Postgres lexes what pgward has parsed).
class ParameterWatch {
 public:
  // The ParameterStatus values Postgres reported during login.
  explicit ParameterWatch(const std::vector<std::pair<std::string, std::string>>& login_parameters);

  // nullopt when `name` is not watched or still has its login value; otherwise the change.
  // A watched setting that was not reported at login counts as changed.
  std::optional<SettingChange> Check(std::string_view name, std::string_view value) const;

 private:
  std::vector<std::pair<std::string, std::string>> login_values_;  // watched names only, lower case
};

}  // namespace pgward::agent
