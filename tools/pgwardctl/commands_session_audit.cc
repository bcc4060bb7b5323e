// pgwardctl session list|kill and audit list|export.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/output.h"

namespace pgward::ctl {
namespace {

namespace v1 = pgward::v1;

constexpr uint64_t kMaxLimit = 10000;  // the store's cap

absl::StatusOr<uint32_t> LimitFlag(const ParsedArgs& args) {
  if (!args.Has("limit")) return 0;  // the gateway's default (100)
  absl::StatusOr<uint64_t> n = ParseNumber("limit", *args.Get("limit"), 1, kMaxLimit);
  if (!n.ok()) return n.status();
  return static_cast<uint32_t>(*n);
}

// On stderr, so --json output stays exactly the array: the gateway bounds each response
// (3 MiB) and said that more matched than fit.
void NoteTruncated(int shown, const char* what) {
  std::cerr << "pgwardctl: showing the newest " << shown << " " << what
            << "; more matched than fit in one response: narrow with --since, --session or --limit\n";
}

// Keeps table rows on one line: statements can be long and multi-line.
std::string OneLine(const std::string& text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) return out + "...";
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  return out;
}

CommandResult ListSessions(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  v1::ListSessionsRequest req;
  absl::StatusOr<uint32_t> limit = LimitFlag(ctx.args());
  if (!limit.ok()) return CommandResult::Usage(std::string(limit.status().message()));
  req.set_limit(*limit);
  req.set_active_only(ctx.args().Has("active"));
  req.set_principal(ctx.args().Get("principal").value_or(""));
  req.set_connection(ctx.args().Get("connection").value_or(""));
  req.set_issuer(ctx.args().Get("issuer").value_or(""));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListSessionsResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListSessions, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (resp.truncated()) NoteTruncated(resp.sessions_size(), "sessions");
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::SessionRecord& s : resp.sessions()) arr.push_back(SessionJson(s));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"SESSION", "PRINCIPAL", "CONNECTION", "CLIENT", "STARTED", "ENDED", "STATEMENTS"});
  for (const v1::SessionRecord& s : resp.sessions()) {
    table.AddRow({s.session_id(), s.principal(), s.connection(), s.client_addr(), FormatTimeMs(s.started_unix_ms()),
                  s.ended_unix_ms() == 0 ? "active" : FormatTimeMs(s.ended_unix_ms()) + " (" + s.end_reason() + ")",
                  absl::StrCat(s.statements())});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

CommandResult KillSession(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(1, "session ID"); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::KillSessionRequest req;
  req.set_session_id(ctx.Operand(0));
  v1::KillSessionResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::KillSession, req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (ctx.json()) {
    PrintJson(ctx.out(), {{"session_id", req.session_id()}, {"killed", true}});
  } else {
    ctx.out() << "killed session " << req.session_id() << "\n";
  }
  return CommandResult::Ok();
}

// The filters audit list and audit export share.
absl::StatusOr<v1::ListAuditRequest> AuditFilter(const ParsedArgs& args) {
  v1::ListAuditRequest req;
  if (args.Has("since")) {
    absl::StatusOr<int64_t> since = ParseDurationMs(*args.Get("since"));
    if (!since.ok()) return since.status();
    req.set_since_unix_ms(absl::ToUnixMillis(absl::Now()) - *since);
  }
  req.set_principal(args.Get("principal").value_or(""));
  req.set_connection(args.Get("connection").value_or(""));
  req.set_session_id(args.Get("session").value_or(""));
  req.set_issuer(args.Get("issuer").value_or(""));
  return req;
}

CommandResult ListAudit(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  absl::StatusOr<v1::ListAuditRequest> req = AuditFilter(ctx.args());
  if (!req.ok()) return CommandResult::Usage(std::string(req.status().message()));
  absl::StatusOr<uint32_t> limit = LimitFlag(ctx.args());
  if (!limit.ok()) return CommandResult::Usage(std::string(limit.status().message()));
  req->set_limit(*limit);
  const bool cursor = ctx.args().Has("after");
  if (cursor) {
    absl::StatusOr<uint64_t> after = ParseNumber("after", *ctx.args().Get("after"), 0, INT64_MAX);
    if (!after.ok()) return CommandResult::Usage(std::string(after.status().message()));
    req->set_after_id(static_cast<int64_t>(*after));
  }
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  v1::ListAuditResponse resp;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListAudit, *req, &resp); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (cursor) {
    // A full page (or a cut one) may have more behind it; an empty one continues from the same id.
    const uint32_t page = *limit == 0 ? 100 : *limit;
    if (resp.truncated() || static_cast<uint32_t>(resp.rows_size()) >= page) {
      std::cerr << "pgwardctl: more rows may follow: continue with --after " << resp.rows().rbegin()->id() << "\n";
    }
  } else if (resp.truncated()) {
    NoteTruncated(resp.rows_size(), "rows");
  }
  if (ctx.json()) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const v1::AuditRow& r : resp.rows()) arr.push_back(AuditJson(r));
    PrintJson(ctx.out(), arr);
    return CommandResult::Ok();
  }
  Table table({"ID", "TIME", "PRINCIPAL", "CONNECTION", "DECISION", "SQLSTATE", "ROWS", "DURATION", "STATEMENT"});
  for (const v1::AuditRow& r : resp.rows()) {
    table.AddRow({absl::StrCat(r.id()), FormatTimeUs(r.time_unix_us()), r.principal(), r.connection(), r.decision(),
                  r.sqlstate().empty() ? "-" : r.sqlstate(), r.rows() < 0 ? "-" : absl::StrCat(r.rows()),
                  absl::StrCat(r.duration_us(), "us"), OneLine(r.statement(), 80)});
  }
  table.Print(ctx.out());
  return CommandResult::Ok();
}

// Every matching row, oldest first, one JSON object per line (the audit list --json fields),
// fetched in pages of kMaxLimit through the id cursor. Rows stored after the export began are
// left for the next export (it stops at the newest id it saw first), so it always ends.
CommandResult ExportAudit(CommandContext& ctx) {
  if (absl::Status s = ctx.ExpectOperands(0, ""); !s.ok()) return CommandResult::Usage(std::string(s.message()));
  const std::string format = ctx.args().Get("format").value_or("jsonl");
  if (format != "jsonl") return CommandResult::Usage("unknown --format \"" + format + "\"; use jsonl");
  absl::StatusOr<v1::ListAuditRequest> req = AuditFilter(ctx.args());
  if (!req.ok()) return CommandResult::Usage(std::string(req.status().message()));
  absl::StatusOr<AdminClient*> client = ctx.Client();
  if (!client.ok()) return CommandResult::FromStatus(client.status());
  // The newest id now (unfiltered): the export's upper bound.
  v1::ListAuditRequest newest;
  newest.set_limit(1);
  v1::ListAuditResponse top;
  if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListAudit, newest, &top); !s.ok()) {
    return CommandResult::FromStatus(s);
  }
  if (top.rows().empty()) return CommandResult::Ok();
  req->set_up_to_id(top.rows(0).id());
  req->set_after_id(0);
  req->set_limit(kMaxLimit);
  while (true) {
    v1::ListAuditResponse page;
    if (absl::Status s = (*client)->Call(&v1::AdminService::Stub::ListAudit, *req, &page); !s.ok()) {
      return CommandResult::FromStatus(s);
    }
    for (const v1::AuditRow& r : page.rows()) ctx.out() << AuditJson(r).dump() << "\n";
    ctx.out().flush();
    if (!ctx.out()) return CommandResult::FromStatus(absl::UnavailableError("cannot write the export"));
    if (page.rows().empty() || (!page.truncated() && static_cast<uint32_t>(page.rows_size()) < kMaxLimit)) break;
    req->set_after_id(page.rows().rbegin()->id());
  }
  return CommandResult::Ok();
}

}  // namespace

CommandResult RunSession(CommandContext& ctx, const std::string& verb) {
  absl::Status allowed = verb == "list" ? ctx.args().CheckAllowed({"active", "principal", "issuer", "connection", "limit"},
                                                                  "session list")
                                        : ctx.args().CheckAllowed({}, "session " + verb);
  if (!allowed.ok()) return CommandResult::Usage(std::string(allowed.message()));
  if (verb == "list") return ListSessions(ctx);
  if (verb == "kill") return KillSession(ctx);
  return CommandResult::Usage("unknown session command \"" + verb + "\"");
}

CommandResult RunAudit(CommandContext& ctx, const std::string& verb) {
  absl::Status allowed =
      verb == "export"
          ? ctx.args().CheckAllowed({"principal", "issuer", "connection", "since", "session", "format"}, "audit export")
          : ctx.args().CheckAllowed({"principal", "issuer", "connection", "since", "limit", "session", "after"},
                                    "audit " + verb);
  if (!allowed.ok()) return CommandResult::Usage(std::string(allowed.message()));
  if (verb == "list") return ListAudit(ctx);
  if (verb == "export") return ExportAudit(ctx);
  return CommandResult::Usage("unknown audit command \"" + verb + "\"");
}

}  // namespace pgward::ctl
