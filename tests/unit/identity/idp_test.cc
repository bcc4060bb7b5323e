// TokenVerifier against the real test IdP (tests/idp, oidc-provider): discovery, JWKS over HTTP,
// RFC 9068 at+jwt tokens from the client_credentials grant. Hidden tag: run with
// `identity_test [idp]` after `npm ci` in tests/idp (needs node on PATH).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "gateway/identity/token_verifier.h"

namespace pgward::identity {
namespace {

// Starts `node tests/idp/server.js` on a free port and stops it (by pid) on destruction.
class TestIdp {
 public:
  explicit TestIdp(int ttl_seconds) {
    char dir_template[] = "/tmp/pgward-idp-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    dir_ = dir_template;
    const std::string clients = dir_ + "/clients.json";
    std::ofstream(clients) << R"([{"client_id":"agent-a","client_secret":"secret-a","groups":["analysts","oncall"]},
                                  {"client_id":"agent-b","client_secret":"secret-b"}])";
    const std::string script = std::string(PGWARD_SOURCE_DIR) + "/tests/idp/server.js";
    REQUIRE(std::filesystem::exists(std::string(PGWARD_SOURCE_DIR) + "/tests/idp/node_modules/oidc-provider"));
    int out[2];
    REQUIRE(pipe(out) == 0);
    const std::string ttl = std::to_string(ttl_seconds);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      execlp("node", "node", script.c_str(), "--port", "0", "--clients", clients.c_str(), "--ttl", ttl.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    issuer_ = ReadReadyLine(out[0]);
    close(out[0]);
    REQUIRE_FALSE(issuer_.empty());
  }
  ~TestIdp() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }

  const std::string& issuer() const { return issuer_; }

  // POST /token with client_secret_basic; returns the access_token or "".
  std::string ClientCredentialsToken(const std::string& id, const std::string& secret) const {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    std::string body;
    const std::string url = issuer_ + "/token";
    const std::string userpwd = id + ":" + secret;
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_USERPWD, userpwd.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "grant_type=client_credentials");
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* ud) {
      static_cast<std::string*>(ud)->append(p, s * n);
      return s * n;
    });
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
    if (curl_easy_perform(curl.get()) != CURLE_OK) return "";
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (!json.is_object() || !json.contains("access_token")) return "";
    return json["access_token"].get<std::string>();
  }

 private:
  static std::string ReadReadyLine(int fd) {
    std::string buffer;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, 500) <= 0) continue;
      char chunk[256];
      const ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n <= 0) return "";
      buffer.append(chunk, static_cast<size_t>(n));
      const size_t nl = buffer.find('\n');
      if (nl != std::string::npos) {
        const std::string line = buffer.substr(0, nl);
        return line.rfind("ready ", 0) == 0 ? line.substr(6) : "";
      }
    }
    return "";
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::string issuer_;
};

VerifierConfig ConfigFor(const std::string& issuer) {
  VerifierConfig config;
  config.issuers.push_back(IssuerConfig{issuer, {"pgward"}, ""});
  return config;
}

TEST_CASE("tokens from the real test IdP verify, with groups and client id", "[.idp]") {
  TestIdp idp(600);
  TokenVerifier verifier(ConfigFor(idp.issuer()), MakeCurlHttpFetcher(""));
  REQUIRE(verifier.Start().ok());

  const std::string token = idp.ClientCredentialsToken("agent-a", "secret-a");
  REQUIRE_FALSE(token.empty());
  auto verified = verifier.Verify(token);
  INFO(verified.status());
  REQUIRE(verified.ok());
  CHECK(verified->issuer == idp.issuer());
  CHECK(verified->principal == "agent-a");
  CHECK(verified->groups == std::vector<std::string>{"analysts", "oncall"});

  auto no_groups = verifier.Verify(idp.ClientCredentialsToken("agent-b", "secret-b"));
  REQUIRE(no_groups.ok());
  CHECK(no_groups->principal == "agent-b");
  CHECK(no_groups->groups.empty());
  CHECK(idp.ClientCredentialsToken("agent-a", "wrong").empty());

  // The same IdP under another audience is not trusted for pgward.
  VerifierConfig other = ConfigFor(idp.issuer());
  other.issuers[0].audiences = {"something-else"};
  TokenVerifier wrong_audience(other, MakeCurlHttpFetcher(""));
  REQUIRE(wrong_audience.Start().ok());
  CHECK(wrong_audience.Verify(token).status().message() == "audience mismatch");
}

TEST_CASE("a real IdP token is refused once expired", "[.idp]") {
  TestIdp idp(1);
  VerifierConfig config = ConfigFor(idp.issuer());
  config.leeway_seconds = 0;
  TokenVerifier verifier(config, MakeCurlHttpFetcher(""));
  REQUIRE(verifier.Start().ok());
  const std::string token = idp.ClientCredentialsToken("agent-a", "secret-a");
  REQUIRE_FALSE(token.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  CHECK(verifier.Verify(token).status().message() == "token expired");
}

}  // namespace
}  // namespace pgward::identity
