// pgwardctl connection create|update|list|delete.
#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/crypto/tls_material.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/output.h"

namespace pgward::ctl {
namespace {

namespace v1 = pgward::v1;

// Flag -> Connection field. --ca-file-agent because --ca-file is the gateway's CA.
struct FieldFlag {
  const char* flag;
  const char* field;
};
constexpr FieldFlag kFieldFlags[] = {{"agent", "agent"},       {"host", "host"},
                                     {"port", "port"},         {"database", "database"},
                                     {"user", "user"},         {"password-ref", "password_ref"},
                                     {"sslmode", "sslmode"},   {"ca-file-agent", "ca_file"}};

absl::Status SetField(v1::Connection& c, const std::string& field, const std::string& value) {
  if (field == "agent") c.set_agent(value);
  if (field == "host") c.set_host(value);
  if (field == "database") c.set_database(value);
  if (field == "user") c.set_user(value);
  if (field == "password_ref") c.set_password_ref(value);
  if (field == "sslmode") c.set_sslmode(value);
  if (field == "ca_file") c.set_ca_file(value);
  if (field == "port") {
    absl::StatusOr<uint64_t> port = ParseNumber("port", value, 1, 65535);
    if (!port.ok()) return port.status();
    c.set_port(static_cast<uint32_t>(*port));
  }
  return absl::OkStatus();
}

// The password for a gateway: reference, from --password-file or --password-stdin; empty if
// neither was given. One trailing newline is dropped (echo and editors add it).
absl::StatusOr<std::string> ReadPassword(CommandContext& ctx) {
  const bool from_file = ctx.args().Has("password-file");
  const bool from_stdin = ctx.args().Has("password-stdin");
  if (from_file && from_stdin) return absl::InvalidArgumentError("give --password-file or --password-stdin, not both");
  std::string password;
  if (from_file) {
    const std::string path = *ctx.args().Get("password-file");
    absl::StatusOr<std::string> content = crypto::ReadFileToString(path, 64 * 1024);
    if (!content.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("cannot read password file ", path, ": ", content.status().message()));
    }
    password = *std::move(content);
  } else if (from_stdin) {
    password.assign(std::istreambuf_iterator<char>(ctx.in()), std::istreambuf_iterator<char>());
  } else {
    return std::string();
  }
  if (!password.empty() && password.back() == '\n') password.pop_back();
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) return absl::InvalidArgumentError("the password is empty");
  return password;
}

void PrintConnection(CommandContext& ctx, const v1::Connection& c, const char* verb) {
  if (ctx.json()) {
    PrintJson(ctx.out(), ConnectionJson(c));
    return;
  }
  ctx.out() << verb << " connection " << c.name() << " (agent " << c.agent() << ", " << c.user() << "@" << c.host()
            << ":" << c.port() << "/" << c.database() << ", sslmode " << c.sslmode() << ", password "
            << c.password_ref() << ")\n";
}

CommandResult CreateOrUpdate(CommandContext& ctx, bool create) {
  if (absl::Status s = ctx.ExpectOperands(1, "connection NAME"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  v1::Connection c;
  c.set_name(ctx.Operand(0));
  std::vector<std::string> fields;
  for (const FieldFlag& f : kFieldFlags) {
    std::optional<std::string> value = ctx.args().Get(f.flag);
    if (!value.has_value()) continue;
    if (absl::Status s = SetField(c, f.field, *value); !s.ok()) return CommandResult::Usage(std::string(s.message()));
    fields.push_back(f.field);
  }
  absl::StatusOr<std::string> password = ReadPassword(ctx);
  if (!password.ok()) {
    return absl::IsInvalidArgument(password.status()) ? CommandResult::Usage(std::string(password.status().message()))
                                                       : CommandResult::FromStatus(password.status());
  }
  if (create) {
    for (const char* required : {"agent", "host", "port", "database", "user", "password-ref"}) {
      if (!ctx.args().Has(required)) return CommandResult::Usage(absl::StrCat("missing --", required));
    }
    if (!ctx.args().Has("sslmode")) c.set_sslmode("prefer");
    if (c.password_ref() == "gateway:" && password->empty()) {
      return CommandResult::Usage("--password-ref gateway: needs --password-file F or --password-stdin");
    }
    if (c.password_ref() != "gateway:" && !password->empty()) {
      return CommandResult::Usage("--password-file/--password-stdin are only for --password-ref gateway:");
    }
  } else if (fields.empty() && password->empty()) {
    return CommandResult::Usage("nothing to update: give at least one flag to change");
  }
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::Connection resp;
  absl::Status status;
  if (create) {
    v1::CreateConnectionRequest req;
    *req.mutable_connection() = c;
    req.set_password_value(*password);
    status = (*client)->Call(&v1::AdminService::Stub::CreateConnection, req, &resp);
  } else {
    v1::UpdateConnectionRequest req;
    *req.mutable_connection() = c;
    for (const std::string& f : fields) req.add_update_fields(f);
    req.set_password_value(*password);
    status = (*client)->Call(&v1::AdminService::Stub::UpdateConnection, req, &resp);
  }
  if (!status.ok()) return CommandResult::FromStatus(status);
  PrintConnection(ctx, resp, create ? "created" : "updated");
  return CommandResult::Ok();
}

CommandResult List(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListConnectionsResponse resp;
  if (absl::Status s =
          (*client)->Call(&v1::AdminService::Stub::ListConnections, v1::ListConnectionsRequest(), &resp);
      !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::Connection& c : resp.connections()) arr.push_back(ConnectionJson(c));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"NAME", "AGENT", "HOST", "PORT", "DATABASE", "USER", "SSLMODE", "PASSWORD"});
  for (const v1::Connection& c : resp.connections()) {
    table.AddRow({c.name(), c.agent(), c.host(), absl::StrCat(c.port()), c.database(), c.user(), c.sslmode(),
                  c.password_ref()});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

CommandResult Delete(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "connection NAME"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::DeleteConnectionRequest req;
  req.set_name(ctx.Operand(0));
  v1::DeleteConnectionResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::DeleteConnection, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), {{"name", req.name()}, {"deleted", true}});
  } else {
    ctx.out() << "deleted connection " << req.name() << " and its grants\n";
  }
  return CommandResult::Ok();
}

}  // namespace

CommandResult RunConnection(CommandContext& ctx, const std::string& verb) {
  const bool writes = verb == "create" || verb == "update";
  absl::Status allowed = writes ? ctx.args().CheckAllowed({"agent", "host", "port", "database", "user", "password-ref",
                                                           "sslmode", "ca-file-agent", "password-file", "password-stdin"},
                                                          "connection " + verb)
                                : ctx.args().CheckAllowed({}, "connection " + verb);
  if (!allowed.ok()) return CommandResult::Usage(std::string(allowed.message()));
  if (verb == "create") return CreateOrUpdate(ctx, true);
  if (verb == "update") return CreateOrUpdate(ctx, false);
  if (verb == "list") return List(ctx);
  if (verb == "delete") return Delete(ctx);
  return CommandResult::Usage("unknown connection command \"" + verb + "\"");
}

}  // namespace pgward::ctl
