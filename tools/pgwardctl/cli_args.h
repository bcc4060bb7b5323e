// Hand-rolled argument parsing for pgwardctl: flags anywhere on the line, positional words in
// order, and the value parsers the commands share (durations, expiry, numbers).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pgward::ctl {

struct ParsedArgs {
  std::vector<std::string> positional;       // NOUN VERB [args...]
  std::map<std::string, std::string> flags;  // name without "--" -> value ("" for switches)

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  // INVALID_ARGUMENT naming the first flag that is neither global nor in `allowed`.
  absl::Status CheckAllowed(std::initializer_list<const char*> allowed, const std::string& command) const;
};

// Accepts "--name value" and "--name=value"; switches (--json, --active, --password-stdin,
// --help/-h) take no value. "--" ends flag parsing. INVALID_ARGUMENT on a missing value or a
// repeated flag.
absl::StatusOr<ParsedArgs> ParseArgs(int argc, const char* const* argv);

// "90s", "15m", "2h", "7d", "1w", or concatenations like "1h30m". Returns milliseconds.
absl::StatusOr<int64_t> ParseDurationMs(const std::string& text);
// A duration from now, or an RFC 3339 time. Returns unix milliseconds.
absl::StatusOr<int64_t> ParseExpiryUnixMs(const std::string& text, int64_t now_unix_ms);
// A decimal integer in [min, max].
absl::StatusOr<uint64_t> ParseNumber(const std::string& flag, const std::string& text, uint64_t min, uint64_t max);

}  // namespace pgward::ctl
