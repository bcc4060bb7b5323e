// pgwardctl's AdminService client: see admin_client.h.
#include "tools/pgwardctl/admin_client.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/tls_material.h"

namespace pgward::ctl {
namespace {

constexpr auto kDeadline = std::chrono::seconds(10);
constexpr size_t kMaxTokenBytes = 64 * 1024;
constexpr int kMaxResponseBytes = 4 << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<AdminClient>> AdminClient::Create(const ClientOptions& options) {
  if (options.token_file.empty()) {
    return absl::FailedPreconditionError(
        "no admin credentials: pass --token-file F or set PGWARD_TOKEN_FILE (the bootstrap key is "
        "<data-dir>/admin.key)");
  }
  absl::StatusOr<std::string> raw = crypto::ReadFileToString(options.token_file, kMaxTokenBytes);
  if (!raw.ok()) {
    // Name the file, never its contents.
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read token file ", options.token_file, ": ", raw.status().message()));
  }
  std::string token(absl::StripAsciiWhitespace(*raw));
  if (token.empty()) return absl::FailedPreconditionError(absl::StrCat("token file ", options.token_file, " is empty"));

  grpc::SslCredentialsOptions tls;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> roots = crypto::ReadFileToString(options.ca_file);
    if (!roots.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read CA file ", options.ca_file, ": ", roots.status().message()));
    }
    tls.pem_root_certs = *std::move(roots);
  }
  // The gateway keeps every response under 3 MiB (AdminServiceImpl::kMaxListResponseBytes);
  // gRPC's default 4 MiB receive limit is stated here so the two stay in step.
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(kMaxResponseBytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.gateway, grpc::SslCredentials(tls), channel_args);
  return std::unique_ptr<AdminClient>(
      new AdminClient(options.gateway, std::move(token), pgward::v1::AdminService::NewStub(channel)));
}

void AdminClient::Prepare(grpc::ClientContext& ctx) const {
  ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
}

absl::Status AdminClient::Describe(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  std::string message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(absl::StrCat("cannot reach gateway at ", gateway_, ": ", message));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(absl::StrCat("gateway at ", gateway_, " did not answer within 10 s"));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(absl::StrCat("gateway refused the credentials: ", message,
                                                     " (check --token-file)"));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(absl::StrCat("not allowed: ", message));
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError(absl::StrCat("the gateway does not support this call: ", message));
    default:
      if (message.empty()) message = absl::StrCat("gateway error ", absl::StatusCodeToString(code));
      return absl::Status(code, message);
  }
}

}  // namespace pgward::ctl
