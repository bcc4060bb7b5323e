// pgwardctl commands, one Run function per noun (commands_<noun>.cc), and what they share.
#pragma once

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/pgwardctl/admin_client.h"
#include "tools/pgwardctl/cli_args.h"

namespace pgward::ctl {

// Exit status 0 (done), 1 (failed: `message` on stderr) or 2 (usage error: `message` plus
// the noun's usage).
struct CommandResult {
  int exit_code = 0;
  std::string message;

  static CommandResult Ok() { return {}; }
  static CommandResult Failure(std::string message) { return {1, std::move(message)}; }
  static CommandResult Usage(std::string message) { return {2, std::move(message)}; }
  static CommandResult FromStatus(const absl::Status& s) {
    return s.ok() ? Ok() : Failure(std::string(s.message()));
  }
};

class CommandContext {
 public:
  CommandContext(const ParsedArgs& args, ClientOptions options, std::ostream& out, std::istream& in)
      : args_(args), options_(std::move(options)), out_(out), in_(in) {}

  const ParsedArgs& args() const { return args_; }
  bool json() const { return args_.Has("json"); }
  std::ostream& out() { return out_; }
  std::istream& in() { return in_; }
  // Reads the token and CA files on first use, so usage errors are reported before them.
  absl::StatusOr<AdminClient*> Client();

  // The words after NOUN VERB; a usage error unless there are exactly `count`.
  absl::Status ExpectOperands(size_t count, const char* names) const;
  const std::string& Operand(size_t i) const { return args_.positional[2 + i]; }

 private:
  const ParsedArgs& args_;
  const ClientOptions options_;
  std::ostream& out_;
  std::istream& in_;
  std::unique_ptr<AdminClient> client_;
};

CommandResult RunAgent(CommandContext& ctx, const std::string& verb);
CommandResult RunConnection(CommandContext& ctx, const std::string& verb);
CommandResult RunGrant(CommandContext& ctx, const std::string& verb);
CommandResult RunPrincipal(CommandContext& ctx, const std::string& verb);
CommandResult RunSession(CommandContext& ctx, const std::string& verb);
CommandResult RunAudit(CommandContext& ctx, const std::string& verb);

}  // namespace pgward::ctl
