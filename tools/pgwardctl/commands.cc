// CommandContext: what every pgwardctl command shares. See commands.h.
#include "tools/pgwardctl/commands.h"

#include "absl/strings/str_cat.h"

namespace pgward::ctl {

absl::StatusOr<AdminClient*> CommandContext::Client() {
  if (client_ == nullptr) {
    absl::StatusOr<std::unique_ptr<AdminClient>> created = AdminClient::Create(options_);
    if (!created.ok()) return created.status();
    client_ = *std::move(created);
  }
  return client_.get();
}

absl::Status CommandContext::ExpectOperands(size_t count, const char* names) const {
  const size_t given = args_.positional.size() - 2;
  if (given == count) return absl::OkStatus();
  if (given < count) return absl::InvalidArgumentError(absl::StrCat("missing ", names));
  return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", args_.positional[2 + count], "\""));
}

}  // namespace pgward::ctl
