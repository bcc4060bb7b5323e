// One-line-per-event logging to stderr, shared by every pgward process.
#pragma once

#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace pgward {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Messages below this level are dropped. Set once at start-up from a flag.
void SetLogLevel(LogLevel level);
// "debug", "info", "warn" or "error"; nullopt for anything else.
std::optional<LogLevel> ParseLogLevel(std::string_view name);
bool LogEnabled(LogLevel level);
// Writes "<UTC time> <level> <component>: <message>\n" with one write(2) so lines from
// different threads never interleave. Never pass secrets here.
void LogLine(LogLevel level, std::string_view component, std::string_view message);

// Debian's Abseil has its own string_view type, which absl::StrCat insists on.
inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }
template <typename T>
const T& LogArg(const T& value) { return value; }
inline absl::string_view LogArg(std::string_view s) { return AbslView(s); }

template <typename... Args>
void Log(LogLevel level, std::string_view component, const Args&... args) {
  if (!LogEnabled(level)) return;
  LogLine(level, component, absl::StrCat(LogArg(args)...));
}

}  // namespace pgward
