// Creation of private directories and atomic writes of key and certificate files (POSIX).
#include "common/crypto/private_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"

namespace pgward::crypto {
namespace {

absl::Status ErrnoStatus(std::string_view what, const std::string& path, int err) {
  std::string msg = absl::StrCat(absl::string_view(what.data(), what.size()), " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == EEXIST) return absl::AlreadyExistsError(msg);
  return absl::InternalError(msg);
}

}  // namespace

absl::Status CreatePrivateDirectories(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  std::filesystem::path target(dir);
  std::filesystem::path partial;
  for (const auto& part : target) {
    partial /= part;
    if (part == "/" || part.empty()) continue;
    // mkdir(2) with 0700 directly, rather than create_directories + chmod, so no window exists in which
    // the directory is world-readable.
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoStatus("cannot create directory", partial.string(), errno);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view content, mode_t mode, bool overwrite) {
  std::string tmp = absl::StrCat(path, ".tmp-", HexEncode(RandomBytes(6)));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus("cannot create", tmp, errno);
  // The umask may have removed bits; it can never have added any, so this only widens to `mode`
  // (e.g. 0644 for a certificate) and keeps keys at 0600.
  ::fchmod(fd, mode);
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus("cannot write", tmp, err);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("cannot flush", tmp, err);
  }
  // link(2) fails with EEXIST instead of replacing, which gives "first writer wins".
  int rc = overwrite ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str());
  int err = errno;
  if (!overwrite || rc != 0) ::unlink(tmp.c_str());
  if (rc != 0) return ErrnoStatus(overwrite ? "cannot replace" : "cannot create", path, err);
  return absl::OkStatus();
}

}  // namespace pgward::crypto
