// pgwardctl's usage text: the whole command set, and the short form per noun.
#pragma once

#include <optional>
#include <string>

namespace pgward::ctl {

std::string FullUsage();
// nullopt for an unknown noun.
std::optional<std::string> NounUsage(const std::string& noun);

}  // namespace pgward::ctl
