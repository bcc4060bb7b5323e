// Adapts command lines to Abseil flags: dashed names and repeatable list flags.
#pragma once

#include <string>
#include <vector>

namespace pgward {

// The contract spells flags with dashes (--data-dir); Abseil names them with underscores.
// Also merges repeated occurrences of the `repeatable` list flags ("--oidc-issuer A
// --oidc-issuer B") into one comma-separated value, which Abseil's vector flags parse.
// "--" ends flag processing, as in Abseil.
std::vector<std::string> NormalizeFlagArgs(int argc, char** argv, const std::vector<std::string>& repeatable);

// argv-style pointers into `args` (which must outlive them).
std::vector<char*> ArgvPointers(std::vector<std::string>& args);

}  // namespace pgward
