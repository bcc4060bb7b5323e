// pgwardctl grant create|update|list|delete.
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/output.h"

namespace pgward::ctl {
namespace {

namespace v1 = pgward::v1;

// --mode and --classes into `policy`.
absl::Status ModeFromFlags(const ParsedArgs& args, v1::Policy& policy) {
  const std::string mode = *args.Get("mode");
  if (mode == "read-only") {
    policy.set_mode(v1::MODE_READ_ONLY);
  } else if (mode == "read-write") {
    policy.set_mode(v1::MODE_READ_WRITE);
  } else if (mode == "classes") {
    policy.set_mode(v1::MODE_STATEMENT_CLASSES);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown --mode \"", mode, "\"; use read-only, read-write or classes"));
  }
  if (args.Has("classes")) {
    if (policy.mode() != v1::MODE_STATEMENT_CLASSES) return absl::InvalidArgumentError("--classes needs --mode classes");
    for (absl::string_view c : absl::StrSplit(*args.Get("classes"), ',', absl::SkipWhitespace())) {
      policy.add_statement_classes(std::string(absl::StripAsciiWhitespace(c)));
    }
  }
  if (policy.mode() == v1::MODE_STATEMENT_CLASSES && policy.statement_classes_size() == 0) {
    return absl::InvalidArgumentError("--mode classes needs --classes a,b,...");
  }
  return absl::OkStatus();
}

// Builds the grant from flags; INVALID_ARGUMENT is a usage error. Class names are checked by
// the gateway, which owns the list.
absl::StatusOr<v1::Grant> GrantFromFlags(const ParsedArgs& args) {
  v1::Grant g;
  const bool has_principal = args.Has("principal");
  if (has_principal == args.Has("group")) return absl::InvalidArgumentError("give exactly one of --principal or --group");
  if (has_principal) {
    g.set_principal(*args.Get("principal"));
  } else {
    g.set_group(*args.Get("group"));
  }
  if (!args.Has("connection")) return absl::InvalidArgumentError("missing --connection");
  g.set_connection(*args.Get("connection"));
  if (!args.Has("mode")) return absl::InvalidArgumentError("missing --mode read-only|read-write|classes");
  v1::Policy& policy = *g.mutable_policy();
  if (absl::Status s = ModeFromFlags(args, policy); !s.ok()) return s;
  if (args.Has("issuer")) g.set_issuer(*args.Get("issuer"));
  if (args.Has("allow-monitoring")) policy.set_allow_monitoring(true);
  if (args.Has("max-sessions")) {
    absl::StatusOr<uint64_t> n = ParseNumber("max-sessions", *args.Get("max-sessions"), 1, 100000);
    if (!n.ok()) return n.status();
    policy.mutable_limits()->set_max_sessions(static_cast<uint32_t>(*n));
  }
  if (args.Has("expires")) {
    absl::StatusOr<int64_t> expires = ParseExpiryUnixMs(*args.Get("expires"), absl::ToUnixMillis(absl::Now()));
    if (!expires.ok()) return expires.status();
    g.set_expires_unix_ms(*expires);
  }
  return g;
}

std::string Who(const v1::Grant& g) { return g.principal().empty() ? "group:" + g.group() : g.principal(); }

std::string PolicyText(const v1::Policy& p) {
  if (p.mode() != v1::MODE_STATEMENT_CLASSES) return ModeName(p.mode());
  return absl::StrCat("classes:", absl::StrJoin(p.statement_classes(), ","));
}

CommandResult Create(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<v1::Grant> grant = GrantFromFlags(ctx.args());
  if (!grant.ok()) return CommandResult::Usage(std::string(grant.status().message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::CreateGrantRequest req;
  *req.mutable_grant() = *std::move(grant);
  v1::Grant resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::CreateGrant, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), GrantJson(resp));
  } else {
    ctx.out() << "created grant " << resp.id() << ": " << Who(resp) << " on " << resp.connection() << ", "
              << PolicyText(resp.policy())
              << (resp.expires_unix_ms() != 0 ? ", expires " + FormatTimeMs(resp.expires_unix_ms()) : "") << "\n";
  }
  return CommandResult::Ok();
}

// The update request from flags: only the given ones change.
absl::StatusOr<v1::UpdateGrantRequest> UpdateFromFlags(const ParsedArgs& args, const std::string& id) {
  v1::UpdateGrantRequest req;
  v1::Grant& g = *req.mutable_grant();
  g.set_id(id);
  v1::Policy& policy = *g.mutable_policy();
  if (args.Has("mode")) {
    if (absl::Status s = ModeFromFlags(args, policy); !s.ok()) return s;
    req.add_update_fields("mode");
    if (policy.mode() == v1::MODE_STATEMENT_CLASSES) req.add_update_fields("statement_classes");
  } else if (args.Has("classes")) {
    // A classes grant keeps its mode and gets a new list.
    for (absl::string_view c : absl::StrSplit(*args.Get("classes"), ',', absl::SkipWhitespace())) {
      policy.add_statement_classes(std::string(absl::StripAsciiWhitespace(c)));
    }
    if (policy.statement_classes_size() == 0) return absl::InvalidArgumentError("--classes needs a,b,...");
    req.add_update_fields("statement_classes");
  }
  if (args.Has("expires")) {
    const std::string text = *args.Get("expires");
    if (text != "never") {
      absl::StatusOr<int64_t> expires = ParseExpiryUnixMs(text, absl::ToUnixMillis(absl::Now()));
      if (!expires.ok()) return expires.status();
      g.set_expires_unix_ms(*expires);
    }
    req.add_update_fields("expires_unix_ms");
  }
  if (args.Has("max-sessions")) {
    const std::string text = *args.Get("max-sessions");
    if (text != "default") {
      absl::StatusOr<uint64_t> n = ParseNumber("max-sessions", text, 1, 100000);
      if (!n.ok()) return absl::InvalidArgumentError(absl::StrCat(n.status().message(), ", or default"));
      policy.mutable_limits()->set_max_sessions(static_cast<uint32_t>(*n));
    }
    req.add_update_fields("max_sessions");
  }
  if (args.Has("allow-monitoring") && args.Has("no-allow-monitoring")) {
    return absl::InvalidArgumentError("give --allow-monitoring or --no-allow-monitoring, not both");
  }
  if (args.Has("allow-monitoring") || args.Has("no-allow-monitoring")) {
    policy.set_allow_monitoring(args.Has("allow-monitoring"));
    req.add_update_fields("allow_monitoring");
  }
  if (req.update_fields().empty()) {
    return absl::InvalidArgumentError(
        "nothing to update; give --mode, --classes, --expires, --max-sessions or --[no-]allow-monitoring");
  }
  return req;
}

CommandResult Update(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "grant ID"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<v1::UpdateGrantRequest> req = UpdateFromFlags(ctx.args(), ctx.Operand(0));
  if (!req.ok()) return CommandResult::Usage(std::string(req.status().message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::Grant resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::UpdateGrant, *req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), GrantJson(resp));
  } else {
    ctx.out() << "updated grant " << resp.id() << ": " << Who(resp) << " on " << resp.connection() << ", "
              << PolicyText(resp.policy())
              << (resp.expires_unix_ms() != 0 ? ", expires " + FormatTimeMs(resp.expires_unix_ms()) : "")
              << "; its live sessions have the new policy\n";
  }
  return CommandResult::Ok();
}

CommandResult List(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListGrantsRequest req;
  req.set_principal(ctx.args().Get("principal").value_or(""));
  req.set_group(ctx.args().Get("group").value_or(""));
  req.set_connection(ctx.args().Get("connection").value_or(""));
  req.set_issuer(ctx.args().Get("issuer").value_or(""));
  v1::ListGrantsResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListGrants, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::Grant& g : resp.grants()) arr.push_back(GrantJson(g));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"ID", "WHO", "CONNECTION", "POLICY", "ISSUER", "MAX SESSIONS", "EXPIRES"});
  for (const v1::Grant& g : resp.grants()) {
    // "-": a grant made before issuers were recorded (it matches only on a one-issuer gateway).
    const uint32_t max_sessions = g.policy().limits().max_sessions();
    table.AddRow({g.id(), Who(g), g.connection(), PolicyText(g.policy()), g.issuer().empty() ? "-" : g.issuer(),
                  max_sessions == 0 ? "default" : absl::StrCat(max_sessions),
                  g.expires_unix_ms() == 0 ? "never" : FormatTimeMs(g.expires_unix_ms())});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

CommandResult Delete(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "grant ID"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::DeleteGrantRequest req;
  req.set_id(ctx.Operand(0));
  v1::DeleteGrantResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::DeleteGrant, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), {{"id", req.id()}, {"deleted", true}});
  } else {
    ctx.out() << "deleted grant " << req.id() << "\n";
  }
  return CommandResult::Ok();
}

}  // namespace

CommandResult RunGrant(CommandContext& ctx, const std::string& verb) {
  absl::Status allowed = absl::OkStatus();
  if (verb == "create") {
    allowed = ctx.args().CheckAllowed(
        {"principal", "group", "connection", "mode", "classes", "issuer", "expires", "max-sessions", "allow-monitoring"}, "grant create");
  } else if (verb == "update") {
    allowed = ctx.args().CheckAllowed(
        {"mode", "classes", "expires", "max-sessions", "allow-monitoring", "no-allow-monitoring"}, "grant update");
  } else if (verb == "list") {
    allowed = ctx.args().CheckAllowed({"principal", "group", "connection", "issuer"}, "grant list");
  } else {
    allowed = ctx.args().CheckAllowed({}, "grant " + verb);
  }
  if (!allowed.ok()) return CommandResult::Usage(std::string(allowed.message()));
  if (verb == "create") return Create(ctx);
  if (verb == "update") return Update(ctx);
  if (verb == "list") return List(ctx);
  if (verb == "delete") return Delete(ctx);
  return CommandResult::Usage("unknown grant command \"" + verb + "\"");
}

}  // namespace pgward::ctl
