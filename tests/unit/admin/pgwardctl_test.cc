// pgwardctl end to end: the real binary against AdminServiceImpl served over TLS with a
// self-signed certificate, as an operator would use it (contract sections 6 and 8).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/crypto/tls_material.h"
#include "tests/unit/admin/admin_harness.h"
#include "tests/unit/store/temp_dir.h"

extern char** environ;

namespace pgward::admin {
namespace {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A gateway stand-in: AdminService over TLS, plus the files an operator would pass.
class TlsGateway {
 public:
  TlsGateway() {
    const std::string cert = dir_.File("tls/gateway.crt");
    const std::string key = dir_.File("tls/gateway.key");
    REQUIRE(crypto::EnsureSelfSignedCertificate(cert, key, "pgward-test", {}).ok());
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({Slurp(key), Slurp(cert)});
    grpc::SslCredentialsOptions client_tls;
    client_tls.pem_root_certs = Slurp(cert);
    harness_ = std::make_unique<testing::AdminHarness>(grpc::SslServerCredentials(tls), grpc::SslCredentials(client_tls));
    std::ofstream(dir_.File("admin.key")) << testing::kAdminKey << "\n";
    std::ofstream(dir_.File("wrong.key")) << "not-the-admin-key\n";
    std::ofstream(dir_.File("db.pw")) << "s3cret-db-password\n";
  }

  // Runs pgwardctl with the gateway, token and CA flags in front of `args`.
  CliResult Run(std::vector<std::string> args, const std::string& token_file = "admin.key") {
    std::vector<std::string> argv = {PGWARDCTL_PATH, "--gateway", harness_->address(), "--token-file",
                                     dir_.File(token_file), "--ca-file", dir_.File("tls/gateway.crt")};
    argv.insert(argv.end(), args.begin(), args.end());
    return Exec(argv);
  }

  CliResult Exec(const std::vector<std::string>& argv) {
    const std::string out_path = dir_.File("stdout"), err_path = dir_.File("stderr");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> raw;
    for (const std::string& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, raw.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CliResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = Slurp(out_path);
    r.err = Slurp(err_path);
    return r;
  }

  testing::AdminHarness& harness() { return *harness_; }
  std::string File(const std::string& name) const { return dir_.File(name); }

 private:
  pgward::testing::TempDir dir_;
  std::unique_ptr<testing::AdminHarness> harness_;
};

TEST_CASE("pgwardctl manages agents, connections and grants over TLS", "[pgwardctl]") {
  TlsGateway gw;
  CliResult created = gw.Run({"agent", "create", "edge-1", "--json"});
  INFO(created.err);
  REQUIRE(created.exit_code == 0);
  const auto agent = nlohmann::json::parse(created.out);
  CHECK(agent["name"] == "edge-1");
  CHECK(gw.harness().store().AuthenticateAgent("edge-1", agent["token"].get<std::string>()).ok());

  gw.harness().live().SetOnline("edge-1");
  CliResult agents = gw.Run({"--json", "agent", "list"});  // global flag before the noun
  REQUIRE(agents.exit_code == 0);
  const auto agent_list = nlohmann::json::parse(agents.out);
  REQUIRE(agent_list.size() == 1);
  CHECK(agent_list[0]["online"] == true);

  CliResult conn = gw.Run({"connection", "create", "app", "--agent", "edge-1", "--host", "db.internal", "--port",
                           "5432", "--database", "app", "--user", "app_rw", "--password-ref", "gateway:",
                           "--password-file", gw.File("db.pw")});
  INFO(conn.err);
  REQUIRE(conn.exit_code == 0);
  CHECK(conn.out.find("s3cret") == std::string::npos);
  CHECK(*gw.harness().secrets().Open(*gw.harness().store().GetSealedPassword("app")) == "s3cret-db-password");

  CliResult table = gw.Run({"connection", "list"});
  REQUIRE(table.exit_code == 0);
  CHECK(table.out.rfind("NAME", 0) == 0);
  CHECK(table.out.find("db.internal") != std::string::npos);
  CHECK(table.out.find("s3cret") == std::string::npos);

  CliResult updated = gw.Run({"connection", "update", "app", "--port", "6432"});
  REQUIRE(updated.exit_code == 0);
  CHECK(gw.harness().store().GetConnection("app")->port() == 6432);

  CliResult grant = gw.Run({"grant", "create", "--principal", "bot", "--connection", "app", "--mode", "classes",
                            "--classes", "read,copy_out", "--expires", "7d", "--json"});
  INFO(grant.err);
  REQUIRE(grant.exit_code == 0);
  const auto g = nlohmann::json::parse(grant.out);
  CHECK(g["mode"] == "classes");
  CHECK(g["classes"] == nlohmann::json::array({"read", "copy_out"}));
  CHECK(g["created_by"] == "admin.key");

  CliResult bad_class = gw.Run({"grant", "create", "--group", "ops", "--connection", "app", "--mode", "classes",
                                "--classes", "read,everything"});
  CHECK(bad_class.exit_code == 1);
  CHECK(bad_class.err.rfind("pgwardctl: ", 0) == 0);
  CHECK(bad_class.err.find("everything") != std::string::npos);

  CliResult deleted = gw.Run({"grant", "delete", g["id"].get<std::string>()});
  CHECK(deleted.exit_code == 0);
  CHECK(gw.Run({"grant", "delete", g["id"].get<std::string>()}).exit_code == 1);
}

TEST_CASE("pgwardctl audit list --json prints exactly the contract fields", "[pgwardctl]") {
  TlsGateway gw;
  pgward::v1::SessionRecord s;
  s.set_session_id("s1");
  s.set_principal("bot");
  s.set_issuer("https://idp.example");
  s.set_connection("app");
  s.set_agent("edge-1");
  s.set_client_addr("192.0.2.1:5000");
  REQUIRE(gw.harness().store().InsertSession(s).ok());
  pgward::v1::StatementEvent e;
  e.set_session_id("s1");
  e.set_time_unix_us(1'700'000'000'123'456);
  e.set_protocol("extended");
  e.set_statement("SELECT * FROM t WHERE id = $1");
  e.set_rows(-1);
  e.set_decision("denied");
  e.set_sqlstate("42501");
  REQUIRE(gw.harness().store().InsertStatementEvents("edge-1", "boot", {{1, e}}).ok());

  CliResult audit = gw.Run({"audit", "list", "--json"});
  INFO(audit.err);
  REQUIRE(audit.exit_code == 0);
  const auto rows = nlohmann::json::parse(audit.out);
  REQUIRE(rows.is_array());
  REQUIRE(rows.size() == 1);
  std::vector<std::string> keys;
  for (const auto& [k, v] : rows[0].items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> contract = {"id", "time", "session_id", "principal", "issuer", "connection", "agent",
                                       "client_addr", "protocol", "statement", "fingerprint", "command_tag", "rows",
                                       "sqlstate", "error", "duration_us", "decision", "rule", "reviewer",
                                       // ARCHITECTURE.md section 9: rows gain their outcome.
                                       "outcome"};
  std::sort(contract.begin(), contract.end());
  CHECK(keys == contract);
  CHECK(rows[0]["time"] == "2023-11-14T22:13:20.123456Z");
  CHECK(rows[0]["principal"] == "bot");
  CHECK(rows[0]["client_addr"] == "192.0.2.1:5000");
  CHECK(rows[0]["rows"] == -1);
  CHECK(rows[0]["outcome"] == "error");  // none sent: derived from the sqlstate

  CliResult since = gw.Run({"audit", "list", "--since", "15m", "--json"});  // the event is from 2023
  REQUIRE(since.exit_code == 0);
  CHECK(nlohmann::json::parse(since.out).empty());
}

TEST_CASE("pgwardctl failures are one line on stderr and never show the token", "[pgwardctl]") {
  TlsGateway gw;
  CliResult refused = gw.Run({"agent", "list"}, "wrong.key");
  CHECK(refused.exit_code == 1);
  CHECK(refused.out.empty());
  CHECK(std::count(refused.err.begin(), refused.err.end(), '\n') == 1);
  CHECK(refused.err.find("missing or invalid admin credentials") != std::string::npos);
  CHECK(refused.err.find("not-the-admin-key") == std::string::npos);

  CliResult unreachable = gw.Exec({PGWARDCTL_PATH, "--gateway", "127.0.0.1:1", "--token-file", gw.File("admin.key"),
                                   "agent", "list"});
  CHECK(unreachable.exit_code == 1);
  CHECK(unreachable.err.rfind("pgwardctl: cannot reach gateway at 127.0.0.1:1", 0) == 0);
  CHECK(std::count(unreachable.err.begin(), unreachable.err.end(), '\n') == 1);

  CliResult usage = gw.Run({"grant", "create", "--principal", "p", "--group", "g", "--connection", "c", "--mode", "read-only"});
  CHECK(usage.exit_code == 2);
  CHECK(usage.err.rfind("pgwardctl: give exactly one of --principal or --group\nusage: ", 0) == 0);

  CliResult unknown = gw.Run({"frobnicate", "now"});
  CHECK(unknown.exit_code == 2);
  CliResult help = gw.Exec({PGWARDCTL_PATH, "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("audit list") != std::string::npos);
}

}  // namespace
}  // namespace pgward::admin
