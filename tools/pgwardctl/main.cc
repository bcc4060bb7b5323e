// pgwardctl: the admin CLI for the gateway's AdminService (contract sections 6 and 8).
// Parses the command line and dispatches to the noun's commands; exit 0 ok, 1 failed, 2 usage.
#include <grpc/support/log.h>

#include <cstdlib>
#include <iostream>

#include "tools/pgwardctl/cli_args.h"
#include "tools/pgwardctl/commands.h"
#include "tools/pgwardctl/usage.h"

namespace {

using pgward::ctl::CommandResult;

int UsageError(const std::string& message, const std::string& usage) {
  std::cerr << "pgwardctl: " << message << "\n" << usage;
  return 2;
}

std::string FlagOrEnv(const pgward::ctl::ParsedArgs& args, const char* flag, const char* env, const char* fallback) {
  if (std::optional<std::string> v = args.Get(flag)) return *v;
  if (const char* e = std::getenv(env); e != nullptr && *e != '\0') return e;
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC's own log lines would break the one-line error contract; its status reaches the user
  // through the RPC result instead.
  gpr_set_log_function([](gpr_log_func_args*) {});

  const std::string short_usage =
      "usage: pgwardctl [--gateway HOST:PORT] [--token-file F] [--ca-file F] [--json] NOUN VERB [args]"
      " (pgwardctl --help for more)\n";
  absl::StatusOr<pgward::ctl::ParsedArgs> args = pgward::ctl::ParseArgs(argc, argv);
  if (!args.ok()) return UsageError(std::string(args.status().message()), short_usage);
  const bool help = args->Has("help") || args->Has("h");
  if (args->positional.empty() || args->positional[0] == "help") {
    if (help || !args->positional.empty()) {
      std::cout << pgward::ctl::FullUsage();
      return 0;
    }
    return UsageError("missing command", short_usage);
  }
  const std::string& noun = args->positional[0];
  std::optional<std::string> noun_usage = pgward::ctl::NounUsage(noun);
  if (!noun_usage.has_value()) return UsageError("unknown command \"" + noun + "\"", short_usage);
  if (help) {
    std::cout << *noun_usage;
    return 0;
  }
  if (args->positional.size() < 2) return UsageError("missing " + noun + " command", *noun_usage);

  pgward::ctl::ClientOptions options;
  options.gateway = FlagOrEnv(*args, "gateway", "PGWARD_GATEWAY", "localhost:9443");
  options.token_file = FlagOrEnv(*args, "token-file", "PGWARD_TOKEN_FILE", "");
  options.ca_file = FlagOrEnv(*args, "ca-file", "PGWARD_CA_FILE", "");
  pgward::ctl::CommandContext ctx(*args, options, std::cout, std::cin);

  const std::string& verb = args->positional[1];
  CommandResult result;
  if (noun == "agent") result = pgward::ctl::RunAgent(ctx, verb);
  if (noun == "connection") result = pgward::ctl::RunConnection(ctx, verb);
  if (noun == "grant") result = pgward::ctl::RunGrant(ctx, verb);
  if (noun == "principal") result = pgward::ctl::RunPrincipal(ctx, verb);
  if (noun == "session") result = pgward::ctl::RunSession(ctx, verb);
  if (noun == "audit") result = pgward::ctl::RunAudit(ctx, verb);
  std::cout.flush();
  if (result.exit_code == 2) return UsageError(result.message, *noun_usage);
  if (result.exit_code != 0) std::cerr << "pgwardctl: " << result.message << "\n";
  return result.exit_code;
}
