// AdminKeyAuthorizer and the bootstrap admin.key file.
#include "gateway/admin/admin_key_authorizer.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/unit/store/temp_dir.h"

namespace pgward::admin {
namespace {

TEST_CASE("the bootstrap key authorizes as admin.key; anything else is UNAUTHENTICATED", "[admin][auth]") {
  AdminKeyAuthorizer authorizer("the-key");
  CHECK(*authorizer.Authorize("the-key") == "admin.key");
  for (const char* bad : {"", "the-ke", "the-key2", "THE-KEY"}) {
    auto result = authorizer.Authorize(bad);
    CHECK(result.status().code() == absl::StatusCode::kUnauthenticated);
    CHECK(result.status().message() == "missing or invalid admin credentials");
  }
  CHECK(authorizer.Authorize(std::string(70'000, 'x')).status().code() == absl::StatusCode::kUnauthenticated);
}

TEST_CASE("OIDC admin tokens are checked by the gateway's callback", "[admin][auth]") {
  AdminKeyAuthorizer authorizer("the-key", [](std::string_view bearer) -> absl::StatusOr<std::string> {
    if (bearer == "admin-jwt") return std::string("oidc:alice");
    if (bearer == "user-jwt") return absl::PermissionDeniedError("principal bob is not an admin");
    return absl::UnauthenticatedError("bad signature on kid 7");
  });
  CHECK(*authorizer.Authorize("admin-jwt") == "oidc:alice");
  CHECK(authorizer.Authorize("user-jwt").status().code() == absl::StatusCode::kPermissionDenied);
  // Verification details are not echoed to an unauthenticated caller.
  auto garbage = authorizer.Authorize("garbage");
  CHECK(garbage.status().code() == absl::StatusCode::kUnauthenticated);
  CHECK(garbage.status().message() == "missing or invalid admin credentials");
  CHECK(*authorizer.Authorize("the-key") == "admin.key");
}

TEST_CASE("admin.key is created once with mode 0600 and read back afterwards", "[admin][auth]") {
  pgward::testing::TempDir dir;
  auto first = EnsureAdminKey(dir.path());
  REQUIRE(first.ok());
  CHECK(first->size() >= 40);
  struct stat st {};
  REQUIRE(stat(dir.File("admin.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto second = EnsureAdminKey(dir.path());
  REQUIRE(second.ok());
  CHECK(*second == *first);
  CHECK_FALSE(EnsureAdminKey(dir.File("missing-dir")).ok());
}

}  // namespace
}  // namespace pgward::admin
