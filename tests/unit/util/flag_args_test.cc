// Command-line normalisation for the contract's dashed, repeatable flags.
#include <catch2/catch.hpp>

#include "common/util/flag_args.h"

namespace {
std::vector<std::string> Normalize(std::vector<std::string> args, const std::vector<std::string>& repeatable = {}) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return pgward::NormalizeFlagArgs(static_cast<int>(argv.size()), argv.data(), repeatable);
}
}  // namespace

TEST_CASE("dashed flag names become Abseil's underscored names", "[flags]") {
  auto out = Normalize({"prog", "--data-dir=/x", "--pg-listen", "127.0.0.1:1", "--allow-insecure-loopback"});
  CHECK(out == std::vector<std::string>{"prog", "--data_dir=/x", "--pg_listen", "127.0.0.1:1",
                                        "--allow_insecure_loopback"});
}

TEST_CASE("repeated list flags merge into one comma-separated value", "[flags]") {
  auto out = Normalize({"prog", "--oidc-issuer", "https://a", "--oidc-audience=x", "--oidc-issuer=https://b"},
                       {"oidc_issuer", "oidc_audience"});
  CHECK(out == std::vector<std::string>{"prog", "--oidc_issuer=https://a,https://b", "--oidc_audience=x"});
}

TEST_CASE("values and everything after -- are left alone", "[flags]") {
  auto out = Normalize({"prog", "--name=my-agent", "positional-arg", "--", "--not-a-flag"});
  CHECK(out == std::vector<std::string>{"prog", "--name=my-agent", "positional-arg", "--", "--not-a-flag"});
}
