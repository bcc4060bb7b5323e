// SQLSTATE codes pgward sends to callers (PostgreSQL docs, Appendix A "Error Codes").
#pragma once

#include <string_view>

namespace pgward::pgwire::sqlstate {

inline constexpr std::string_view kInvalidAuthorization = "28000";  // invalid_authorization_specification
inline constexpr std::string_view kInvalidCatalogName = "3D000";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kInsufficientPrivilege = "42501";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kQueryCanceled = "57014";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInternalError = "XX000";
inline constexpr std::string_view kSyntaxError = "42601";

}  // namespace pgward::pgwire::sqlstate
