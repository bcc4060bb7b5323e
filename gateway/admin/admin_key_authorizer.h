// Admin authorization by the bootstrap key in <data-dir>/admin.key or, when configured, an
// OIDC token of an admin principal or group (contract sections 6 and 8).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gateway/admin/admin_interfaces.h"

namespace pgward::admin {

// Creates <data_dir>/admin.key (a RandomToken, mode 0600, O_EXCL so two starting gateways
// never overwrite each other's key) on first start; afterwards reads it. Returns the key.
absl::StatusOr<std::string> EnsureAdminKey(const std::string& data_dir);

class AdminKeyAuthorizer : public AdminAuthorizer {
 public:
  // Returns the admin identity for a bearer that is not the bootstrap key, or an error.
  // PERMISSION_DENIED from it (a valid token that is not an admin) is passed on; any other
  // error becomes the generic UNAUTHENTICATED answer.
  using OidcCheck = std::function<absl::StatusOr<std::string>(std::string_view bearer)>;

  explicit AdminKeyAuthorizer(std::string admin_key, OidcCheck oidc_check = nullptr)
      : admin_key_(std::move(admin_key)), oidc_check_(std::move(oidc_check)) {}

  absl::StatusOr<std::string> Authorize(std::string_view bearer) override;

 private:
  const std::string admin_key_;
  const OidcCheck oidc_check_;
};

}  // namespace pgward::admin
