// pgwardctl principal revoke|restore|list.
#include "absl/strings/str_cat.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/output.h"

namespace pgward::ctl {
namespace {

namespace v1 = pgward::v1;

// `principal revoke P` or `principal revoke --group G`: exactly one of them.
absl::Status Subject(CommandContext& ctx, std::string& principal, std::string& group) {
  const bool by_group = ctx.args().Has("group");
  if (absl::Status s = ctx.ExpectOperands(by_group ? 0 : 1, "principal (or --group G)"); !s.ok()) {
    if (by_group) return absl::InvalidArgumentError("give a principal or --group G, not both");
    return s;
  }
  if (by_group) {
    group = *ctx.args().Get("group");
  } else {
    principal = ctx.Operand(0);
  }
  return absl::OkStatus();
}

std::string Who(const std::string& principal, const std::string& group) {
  return principal.empty() ? "group " + group : "principal " + principal;
}

CommandResult Revoke(CommandContext& ctx) {
  v1::RevokePrincipalRequest req;
  if (absl::Status s = Subject(ctx, *req.mutable_principal(), *req.mutable_group()); !s.ok()) {
    return CommandResult::Usage(std::string(s.message()));
  }
  req.set_issuer(ctx.args().Get("issuer").value_or(""));
  req.set_reason(ctx.args().Get("reason").value_or(""));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::Revocation resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::RevokePrincipal, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    nlohmann::ordered_json j = RevocationJson(resp);
    j["sessions_ended"] = resp.sessions_ended();
    PrintJson(ctx.out(), j);
  } else {
    ctx.out() << "revoked " << Who(resp.principal(), resp.group()) << " of " << resp.issuer() << "; ended "
              << resp.sessions_ended() << " live session" << (resp.sessions_ended() == 1 ? "" : "s") << "\n";
  }
  return CommandResult::Ok();
}

CommandResult Restore(CommandContext& ctx) {
  v1::RestorePrincipalRequest req;
  if (absl::Status s = Subject(ctx, *req.mutable_principal(), *req.mutable_group()); !s.ok()) {
    return CommandResult::Usage(std::string(s.message()));
  }
  req.set_issuer(ctx.args().Get("issuer").value_or(""));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::RestorePrincipalResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::RestorePrincipal, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), {{"principal", req.principal()}, {"group", req.group()}, {"restored", true}});
  } else {
    ctx.out() << "restored " << Who(req.principal(), req.group()) << "\n";
  }
  return CommandResult::Ok();
}

CommandResult List(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListRevocationsRequest req;
  v1::ListRevocationsResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListRevocations, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::Revocation& r : resp.revocations()) arr.push_back(RevocationJson(r));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"WHO", "ISSUER", "REVOKED", "BY", "REASON"});
  for (const v1::Revocation& r : resp.revocations()) {
    table.AddRow({r.principal().empty() ? "group:" + r.group() : r.principal(), r.issuer(),
                  FormatTimeMs(r.revoked_unix_ms()), r.revoked_by(), r.reason().empty() ? "-" : r.reason()});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

}  // namespace

CommandResult RunPrincipal(CommandContext& ctx, const std::string& verb) {
  absl::Status allowed = absl::OkStatus();
  if (verb == "revoke") {
    allowed = ctx.args().CheckAllowed({"group", "issuer", "reason"}, "principal revoke");
  } else if (verb == "restore") {
    allowed = ctx.args().CheckAllowed({"group", "issuer"}, "principal restore");
  } else {
    allowed = ctx.args().CheckAllowed({}, "principal " + verb);
  }
  if (!allowed.ok()) return CommandResult::Usage(std::string(allowed.message()));
  if (verb == "revoke") return Revoke(ctx);
  if (verb == "restore") return Restore(ctx);
  if (verb == "list") return List(ctx);
  return CommandResult::Usage("unknown principal command \"" + verb + "\"");
}

}  // namespace pgward::ctl
