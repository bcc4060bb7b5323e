// pgwardctl argument parsing: see cli_args.h.
#include "tools/pgwardctl/cli_args.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace pgward::ctl {
namespace {

constexpr std::array<const char*, 7> kSwitches = {"json",          "active", "password-stdin", "allow-monitoring",
                                                   "no-allow-monitoring", "help", "h"};
constexpr std::array<const char*, 4> kGlobalFlags = {"gateway", "token-file", "ca-file", "json"};

bool IsSwitch(const std::string& name) {
  return std::any_of(kSwitches.begin(), kSwitches.end(), [&](const char* s) { return name == s; });
}

}  // namespace

std::optional<std::string> ParsedArgs::Get(const std::string& name) const {
  auto it = flags.find(name);
  if (it == flags.end()) return std::nullopt;
  return it->second;
}

absl::Status ParsedArgs::CheckAllowed(std::initializer_list<const char*> allowed, const std::string& command) const {
  for (const auto& [name, value] : flags) {
    const auto is = [&](const char* n) { return name == n; };
    if (std::any_of(kGlobalFlags.begin(), kGlobalFlags.end(), is) ||
        std::any_of(allowed.begin(), allowed.end(), is) || name == "help" || name == "h") {
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " for '", command, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ParsedArgs> ParseArgs(int argc, const char* const* argv) {
  ParsedArgs out;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("malformed flag ", arg));
    if (IsSwitch(name)) {
      if (value.has_value()) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      value = "";
    } else if (!value.has_value()) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    if (out.flags.count(name) > 0) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " given twice"));
    out.flags.emplace(name, *value);
  }
  return out;
}

absl::StatusOr<int64_t> ParseDurationMs(const std::string& text) {
  const auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", text, "\"; use e.g. 90s, 15m, 2h, 7d, 1h30m"));
  };
  if (text.empty()) return invalid();
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i] - '0');
      if (++digits > 9) return invalid();
      ++i;
    }
    if (digits == 0 || i >= text.size()) return invalid();
    int64_t unit_ms = 0;
    switch (text[i]) {
      case 's': unit_ms = 1000; break;
      case 'm': unit_ms = 60 * 1000; break;
      case 'h': unit_ms = 3600 * 1000; break;
      case 'd': unit_ms = 24 * 3600 * 1000; break;
      case 'w': unit_ms = 7 * 24 * 3600 * 1000LL; break;
      default: return invalid();
    }
    ++i;
    total += n * unit_ms;
  }
  if (total <= 0) return invalid();
  return total;
}

absl::StatusOr<int64_t> ParseExpiryUnixMs(const std::string& text, int64_t now_unix_ms) {
  if (absl::StatusOr<int64_t> d = ParseDurationMs(text); d.ok()) return now_unix_ms + *d;
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return absl::ToUnixMillis(t);
  return absl::InvalidArgumentError(
      absl::StrCat("invalid --expires \"", text, "\"; use a duration (12h, 7d) or an RFC 3339 time (2030-01-31T18:00:00Z)"));
}

absl::StatusOr<uint64_t> ParseNumber(const std::string& flag, const std::string& text, uint64_t min, uint64_t max) {
  uint64_t n = 0;
  const bool digits_only = !text.empty() && text.size() <= 19 &&
                           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits_only) n = std::stoull(text);
  if (!digits_only || n < min || n > max) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be a number from ", min, " to ", max));
  }
  return n;
}

}  // namespace pgward::ctl
