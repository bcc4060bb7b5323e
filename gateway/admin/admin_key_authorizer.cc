// Bootstrap admin key and admin authorization: see admin_key_authorizer.h.
#include "gateway/admin/admin_key_authorizer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/random.h"
#include "common/crypto/token_hash.h"
#include "common/util/log.h"

namespace pgward::admin {
namespace {

constexpr char kInvalidCredentials[] = "missing or invalid admin credentials";
// Same bound as caller tokens (ARCHITECTURE.md section 1): nothing unbounded crosses a trust
// boundary.
constexpr size_t kMaxBearerBytes = 64 * 1024;

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
    Log(LogLevel::kWarn, "admin", path, " is readable by group or others; chmod 600 it");
  }
  std::string content;
  char buf[256];
  while (content.size() < 4096) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  std::string key(absl::StripAsciiWhitespace(content));
  if (key.empty()) return absl::FailedPreconditionError(absl::StrCat(path, " is empty"));
  return key;
}

}  // namespace

absl::StatusOr<std::string> EnsureAdminKey(const std::string& data_dir) {
  const std::string path = absl::StrCat(data_dir, "/admin.key");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return ReadKeyFile(path);
    return absl::FailedPreconditionError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  const std::string key = crypto::RandomToken();
  const std::string content = key + "\n";
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = std::strerror(errno);
      ::close(fd);
      ::unlink(path.c_str());
      return absl::InternalError(absl::StrCat("cannot write ", path, ": ", error));
    }
    written += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  Log(LogLevel::kInfo, "admin", "created bootstrap admin key ", path);
  return key;
}

absl::StatusOr<std::string> AdminKeyAuthorizer::Authorize(std::string_view bearer) {
  if (bearer.empty() || bearer.size() > kMaxBearerBytes) {
    return absl::UnauthenticatedError(kInvalidCredentials);
  }
  if (!admin_key_.empty() && crypto::ConstantTimeEquals(bearer, admin_key_)) return std::string("admin.key");
  if (oidc_check_) {
    absl::StatusOr<std::string> identity = oidc_check_(bearer);
    if (identity.ok()) return identity;
    if (absl::IsPermissionDenied(identity.status())) return identity.status();
  }
  return absl::UnauthenticatedError(kInvalidCredentials);
}

}  // namespace pgward::admin
