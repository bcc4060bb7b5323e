#include "agent/upstream/credential_resolver.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pgward::agent {

absl::StatusOr<std::string> ResolveCredential(const pgward::v1::UpstreamTarget& target) {
  const std::string& ref = target.password_ref();
  if (absl::StartsWith(ref, "agent-env:")) {
    std::string var = ref.substr(10);
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("environment variable ", var, " named by the connection's password "
                       "reference is not set on the agent"));
    }
    return std::string(value);
  }
  if (absl::StartsWith(ref, "agent-file:")) {
    std::string path = ref.substr(11);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read password file ", path, " on the agent"));
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    std::string value = buffer.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    return value;
  }
  if (ref == "gateway:" || absl::StartsWith(ref, "gateway:")) return target.password_value();
  if (ref.empty()) return std::string();  // trust/peer authentication upstream
  return absl::InvalidArgumentError(absl::StrCat("unsupported password reference scheme in '",
                                                 ref.substr(0, ref.find(':')), "'"));
}

}  // namespace pgward::agent
