// pgwardctl usage text: see usage.h.
#include "tools/pgwardctl/usage.h"

#include <array>
#include <utility>

namespace pgward::ctl {
namespace {

constexpr std::array<std::pair<const char*, const char*>, 6> kNouns = {{
    {"agent",
     "  pgwardctl agent create NAME          create an agent; prints its token once\n"
     "  pgwardctl agent list\n"
     "  pgwardctl agent rotate NAME [--grace 10m]   a new token, printed once; the old one works for\n"
     "            --grace (default 10m, at most 7d; write the new one to the agent's --token-file and\n"
     "            send it SIGHUP), then an agent still using the old one is disconnected;\n"
     "            --grace 0 revokes the old token at once (a leaked token)\n"
     "  pgwardctl agent delete NAME\n"},
    {"connection",
     "  pgwardctl connection create NAME --agent A --host H --port P --database D --user U\n"
     "            --password-ref agent-env:VAR|agent-file:/path|gateway: [--sslmode disable|prefer|require|verify-full]\n"
     "            [--ca-file-agent PATH] [--password-file F | --password-stdin]   (password only for gateway:)\n"
     "  pgwardctl connection update NAME [any create flag; only the given ones change]\n"
     "  pgwardctl connection list\n"
     "  pgwardctl connection delete NAME     also deletes its grants and ends its sessions\n"},
    {"grant",
     "  pgwardctl grant create (--principal P | --group G) --connection C --mode read-only|read-write|classes\n"
     "            [--classes read,write,ddl,transaction,session,copy_in,copy_out,privilege,maintenance,procedure]\n"
     "            [--issuer URL] [--expires DURATION|RFC3339] [--max-sessions N] [--allow-monitoring]\n"
     "            --issuer: the principal's or group's issuer; required when the gateway trusts several\n"
     "            --max-sessions: live sessions the principal may hold on C (default: the gateway's\n"
     "            --max-sessions-per-principal)\n"
     "            --allow-monitoring: may read pg_stat_activity, pg_locks, pg_stat_statements and the\n"
     "            like, which show every other session's statements (refused by default)\n"
     "  pgwardctl grant update ID [--mode M [--classes ...]] [--classes ...] [--expires D|RFC3339|never]\n"
     "            [--max-sessions N|default] [--allow-monitoring | --no-allow-monitoring]\n"
     "            only the given ones change; live sessions the grant covers get the new policy at\n"
     "            once (their next statement is judged by it)\n"
     "  pgwardctl grant list [--principal P] [--group G] [--issuer URL] [--connection C]\n"
     "  pgwardctl grant delete ID\n"},
    {"principal",
     "  pgwardctl principal revoke (P | --group G) [--issuer URL] [--reason TEXT]\n"
     "            refuses its new sessions (28000) and ends its live ones on every agent (57P01)\n"
     "  pgwardctl principal restore (P | --group G) [--issuer URL]\n"
     "  pgwardctl principal list             who is revoked, by whom, when and why\n"},
    {"session",
     "  pgwardctl session list [--active] [--principal P] [--issuer URL] [--connection C] [--limit N]\n"
     "  pgwardctl session kill ID\n"},
    {"audit",
     "  pgwardctl audit list [--principal P] [--issuer URL] [--connection C] [--since DURATION (15m, 2h, 7d)]\n"
     "            [--limit N (at most 10000)] [--session S] [--after ID]\n"
     "            one response holds at most 3 MiB of rows (newest first); a note on stderr says when\n"
     "            more matched. --after ID pages forward: rows after ID, oldest first, and a note\n"
     "            on stderr with the --after for the next page\n"
     "  pgwardctl audit export [--principal P] [--issuer URL] [--connection C] [--since D] [--session S]\n"
     "            [--format jsonl]   every matching row, oldest first, one JSON object per line\n"},
}};

constexpr char kGlobal[] =
    "usage: pgwardctl [--gateway HOST:PORT] [--token-file F] [--ca-file F] [--json] NOUN VERB [args]\n";

}  // namespace

std::string FullUsage() {
  std::string out = kGlobal;
  out +=
      "\n"
      "  --gateway HOST:PORT  gateway gRPC address (default $PGWARD_GATEWAY, else localhost:9443)\n"
      "  --token-file F       admin.key or an admin OIDC token (default $PGWARD_TOKEN_FILE)\n"
      "  --ca-file F          CA for the gateway's TLS certificate, usually <data-dir>/tls/gateway.crt\n"
      "                       (default $PGWARD_CA_FILE, else the system roots)\n"
      "  --json               machine-readable output\n"
      "\ncommands:\n";
  for (const auto& [noun, text] : kNouns) out += text;
  return out;
}

std::optional<std::string> NounUsage(const std::string& noun) {
  for (const auto& [name, text] : kNouns) {
    if (noun == name) return std::string(kGlobal) + text;
  }
  return std::nullopt;
}

}  // namespace pgward::ctl
