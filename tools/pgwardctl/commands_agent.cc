// pgwardctl agent create|list|rotate|delete.
#include "absl/strings/str_cat.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/output.h"

namespace pgward::ctl {
namespace {

namespace v1 = pgward::v1;

CommandResult Create(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "agent NAME"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::CreateAgentRequest req;
  req.set_name(ctx.Operand(0));
  v1::CreateAgentResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::CreateAgent, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  // The one place pgwardctl prints a secret: the gateway keeps only its hash, so this is
  // the only chance to save it.
  if (ctx.json()) {
    nlohmann::ordered_json j;
    j["name"] = resp.agent().name();
    j["token"] = resp.token();
    PrintJson(ctx.out(), j);
  } else {
    ctx.out() << "created agent " << resp.agent().name() << "\n"
              << "token (shown once; put it in the agent's --token-file):\n"
              << resp.token() << "\n";
  }
  return CommandResult::Ok();
}

CommandResult List(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListAgentsResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListAgents, v1::ListAgentsRequest(), &resp);
      !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::Agent& a : resp.agents()) arr.push_back(AgentJson(a));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"NAME", "ONLINE", "SESSIONS", "SPOOL", "LAST SEEN", "VERSION", "PEER"});
  for (const v1::Agent& a : resp.agents()) {
    // The event spool: what awaits the gateway's acknowledgement, of its bound.
    std::string spool = "-";
    if (a.online() && a.spool_max_bytes() > 0) {
      spool = absl::StrCat(a.spool_bytes() / 1024, "/", a.spool_max_bytes() / 1024, " KiB",
                           a.spool_full() ? " FULL" : "");
    }
    table.AddRow({a.name(), a.online() ? "yes" : "no", absl::StrCat(a.active_sessions()), spool,
                  a.last_seen_unix_ms() == 0 ? "never" : FormatTimeMs(a.last_seen_unix_ms()), a.version(), a.peer()});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

CommandResult Rotate(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "agent NAME"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  v1::RotateAgentRequest req;
  req.set_name(ctx.Operand(0));
  const std::string grace = ctx.args().Get("grace").value_or("10m");
  if (grace == "0") {
    req.set_grace_ms(0);
  } else {
    absl::StatusOr<int64_t> ms = ParseDurationMs(grace);
    if (!ms.ok()) return CommandResult::Usage(absl::StrCat("--grace: ", ms.status().message(), ", or 0"));
    req.set_grace_ms(*ms);
  }
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::RotateAgentResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::RotateAgent, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  // Like create: the new token is shown once.
  if (ctx.json()) {
    nlohmann::ordered_json j;
    j["name"] = req.name();
    j["token"] = resp.token();
    j["old_token_expires"] = FormatTimeMs(resp.old_token_expires_unix_ms());
    PrintJson(ctx.out(), j);
  } else {
    ctx.out() << "rotated the token of agent " << req.name() << "; the old token "
              << (req.grace_ms() == 0 ? std::string("stopped working now")
                                      : "works until " + FormatTimeMs(resp.old_token_expires_unix_ms()))
              << "\nnew token (shown once; put it in the agent's --token-file and send the agent SIGHUP):\n"
              << resp.token() << "\n";
  }
  return CommandResult::Ok();
}

CommandResult Delete(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "agent NAME"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::DeleteAgentRequest req;
  req.set_name(ctx.Operand(0));
  v1::DeleteAgentResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::DeleteAgent, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), {{"name", req.name()}, {"deleted", true}});
  } else {
    ctx.out() << "deleted agent " << req.name() << "\n";
  }
  return CommandResult::Ok();
}

}  // namespace

CommandResult RunAgent(CommandContext& ctx, const std::string& verb) {
  absl::Status allowed = verb == "rotate" ? ctx.args().CheckAllowed({"grace"}, "agent rotate")
                                          : ctx.args().CheckAllowed({}, "agent " + verb);
  if (absl::Status s = allowed; !s.ok()) {
    return CommandResult::Usage(std::string(s.message()));
  }
  if (verb == "create") return Create(ctx);
  if (verb == "list") return List(ctx);
  if (verb == "rotate") return Rotate(ctx);
  if (verb == "delete") return Delete(ctx);
  return CommandResult::Usage("unknown agent command \"" + verb + "\"");
}

}  // namespace pgward::ctl
