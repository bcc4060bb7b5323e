#include "common/util/flag_args.h"

#include <algorithm>
#include <map>

namespace pgward {

std::vector<std::string> NormalizeFlagArgs(int argc, char** argv, const std::vector<std::string>& repeatable) {
  std::vector<std::string> out;
  std::map<std::string, size_t> list_position;  // flag name -> index in `out`
  if (argc > 0) out.emplace_back(argv[0]);
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (flags_done || arg.size() < 3 || arg.rfind("--", 0) != 0) {
      if (arg == "--") flags_done = true;
      out.push_back(arg);
      continue;
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::replace(name.begin(), name.end(), '-', '_');
    const bool is_list = std::find(repeatable.begin(), repeatable.end(), name) != repeatable.end();
    std::string value;
    bool has_value = eq != std::string::npos;
    if (has_value) {
      value = arg.substr(eq + 1);
    } else if (is_list && i + 1 < argc) {
      value = argv[++i];
      has_value = true;
    }
    if (is_list && has_value) {
      auto it = list_position.find(name);
      if (it != list_position.end()) {
        out[it->second] += "," + value;
        continue;
      }
      list_position[name] = out.size();
      out.push_back("--" + name + "=" + value);
      continue;
    }
    out.push_back("--" + name + (has_value ? "=" + value : ""));
  }
  return out;
}

std::vector<char*> ArgvPointers(std::vector<std::string>& args) {
  std::vector<char*> pointers;
  pointers.reserve(args.size() + 1);
  for (auto& arg : args) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace pgward
