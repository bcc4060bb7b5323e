// Builds the pinned upstream startup parameters and watches the reported settings (see pinned_settings.h).
#include "agent/upstream/pinned_settings.h"

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/upstream/upstream_login.h"
#include "common/pgwire/startup_parameters.h"

namespace pgward::agent {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct Watched {
  std::string_view name;
  std::string_view end_reason;
};
constexpr std::array<Watched, 5> kWatched = {{
    {"application_name", kIdentityChanged},
    {"session_authorization", kIdentityChanged},
    {"is_superuser", kIdentityChanged},
    {"client_encoding", kLexingSettingChanged},
    {"standard_conforming_strings", kLexingSettingChanged},
}};

const Watched* FindWatched(std::string_view lower_name) {
  for (const Watched& w : kWatched) {
    if (w.name == lower_name) return &w;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> UpstreamStartupParameters(
    const pgward::v1::SessionGrant& grant) {
  std::vector<std::pair<std::string, std::string>> caller(grant.startup_parameters().begin(),
                                                          grant.startup_parameters().end());
  // std::map-like order from the proto map is arbitrary; sort so the packet is deterministic.
  std::sort(caller.begin(), caller.end());
  auto filtered = pgwire::FilterStartupParameters(caller);
  if (!filtered.ok()) return filtered.status();

  std::string requested_encoding;
  std::vector<std::pair<std::string, std::string>> passed;
  for (auto& [name, value] : filtered->passed) {
    if (name == "client_encoding") {
      requested_encoding = value;  // pinned in options below, with the other lexing settings
    } else {
      passed.emplace_back(std::move(name), std::move(value));
    }
  }
  auto encoding = pgwire::PinnedClientEncoding(requested_encoding);
  if (!encoding.ok()) return encoding.status();

  std::string options = absl::StrCat("-c pgward.principal=", EscapeStartupOption(grant.principal()),
                                     " -c pgward.session_id=", EscapeStartupOption(grant.session_id()));
  if (grant.policy().mode() == pgward::v1::MODE_READ_ONLY) {
    absl::StrAppend(&options, " -c default_transaction_read_only=on");
  }
  absl::StrAppend(&options, " -c standard_conforming_strings=on -c backslash_quote=safe_encoding -c client_encoding=",
                  *encoding);

  std::vector<std::pair<std::string, std::string>> parameters = {
      {"application_name", "pgward:" + grant.principal()}, {"options", std::move(options)}};
  for (auto& parameter : passed) parameters.push_back(std::move(parameter));
  return parameters;
}

std::string SessionIdSetting(std::string_view session_id) {
  std::string sql = "SET pgward.session_id = '";
  for (char c : session_id) {
    if (c == '\'') sql.push_back('\'');
    sql.push_back(c);
  }
  sql.push_back('\'');
  return sql;
}

std::string ReadOnlySetting(bool read_only) {
  return read_only ? "SET default_transaction_read_only = on" : "SET default_transaction_read_only = off";
}

ParameterWatch::ParameterWatch(const std::vector<std::pair<std::string, std::string>>& login_parameters) {
  for (const auto& [name, value] : login_parameters) {
    std::string lower = absl::AsciiStrToLower(AV(name));
    if (FindWatched(lower) != nullptr) login_values_.emplace_back(std::move(lower), value);
  }
}

std::optional<SettingChange> ParameterWatch::Check(std::string_view name, std::string_view value) const {
  const std::string lower = absl::AsciiStrToLower(AV(name));
  const Watched* watched = FindWatched(lower);
  if (watched == nullptr) return std::nullopt;
  for (const auto& [login_name, login_value] : login_values_) {
    if (login_name == lower && login_value == value) return std::nullopt;
  }
  SettingChange change;
  change.end_reason = std::string(watched->end_reason);
  change.message = absl::StrCat("pgward: the session's ", AV(watched->name),
                                " was changed by a statement it ran; the session was ended");
  return change;
}

}  // namespace pgward::agent
