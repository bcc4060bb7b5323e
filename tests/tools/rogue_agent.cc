// rogue_agent: a test-only AgentService client that misbehaves on purpose, so integration tests
// can show what the gateway refuses from an agent that holds a valid token (forged events for
// another agent's sessions, other agents' Session streams, oversized messages, a second process
// with the same name). It prints one JSON object on stdout: what the gateway answered.
//
// rogue_agent --gateway HOST:PORT --ca-file F --name NAME --token-file F [--hello-name NAME]
//             [--boot-id ID] COMMAND [options]
//   hello [--hold-ms N]             Control stream + Hello; {"result":"welcome"} (then, with
//                                   --hold-ms, {"result":"held"} if still open N ms later) or
//                                   {"result":"status","code":C,"message":M}
//   forge-statement --session S [--statement TEXT | --statement-bytes N] [--ended]
//                                   Hello, then one StatementEvent (seq 1) for session S and,
//                                   with --ended, a SessionEnded (seq 2); waits for the ack:
//                                   {"result":"ack","seq":N} or a status
//   open-session --session S        Session stream whose first frame claims session S
//                                   (opened, ok); prints the status the gateway ends it with
//   flood-sessions --count N        N Session streams at once, none sending anything, each
//                                   waited for until the gateway ends it; prints
//                                   {"result":"flood","streams":N,"codes":{"16":n,...},"seconds":S}
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/crypto/tls_material.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace {

namespace v1 = pgward::v1;
using Json = nlohmann::ordered_json;

constexpr auto kDeadline = std::chrono::seconds(20);

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "rogue_agent: " << why << "\n";
  std::exit(2);
}

void Print(const Json& j) { std::cout << j.dump() << std::endl; }

Json StatusJson(const grpc::Status& status) {
  return {{"result", "status"}, {"code", static_cast<int>(status.error_code())}, {"message", status.error_message()}};
}

struct Options {
  std::map<std::string, std::string> flags;
  std::string command;
  const std::string& Need(const std::string& name) const {
    auto it = flags.find(name);
    if (it == flags.end()) Usage("missing --" + name);
    return it->second;
  }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  }
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      const std::string name = arg.substr(2);
      if (name == "ended") {
        o.flags[name] = "1";
        continue;
      }
      if (i + 1 >= argc) Usage("--" + name + " needs a value");
      o.flags[name] = argv[++i];
    } else if (o.command.empty()) {
      o.command = arg;
    } else {
      Usage("unexpected argument " + arg);
    }
  }
  if (o.command.empty()) Usage("missing command (hello, forge-statement, open-session, flood-sessions)");
  return o;
}

class Rogue {
 public:
  explicit Rogue(const Options& o) : o_(o) {
    auto ca = pgward::crypto::ReadFileToString(o.Need("ca-file"));
    if (!ca.ok()) Usage("cannot read --ca-file");
    auto token = pgward::crypto::ReadFileToString(o.Need("token-file"));
    if (!token.ok()) Usage("cannot read --token-file");
    token_ = *token;
    while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r' || token_.back() == ' ')) token_.pop_back();
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = *ca;
    grpc::ChannelArguments args;
    if (o.Has("tls-server-name")) args.SetSslTargetNameOverride(o.Get("tls-server-name"));
    stub_ = v1::AgentService::NewStub(grpc::CreateCustomChannel(o.Need("gateway"), grpc::SslCredentials(tls), args));
  }

  void Prepare(grpc::ClientContext& ctx) const {
    ctx.AddMetadata("authorization", "Bearer " + token_);
    ctx.AddMetadata("x-pgward-agent", o_.Need("name"));
    ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
  }

  // Opens Control and says hello; true once welcomed.
  bool Hello(grpc::ClientContext& ctx,
             std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::GatewayMessage>>& stream) {
    Prepare(ctx);
    stream = stub_->Control(&ctx);
    v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_name(o_.Get("hello-name", o_.Need("name")));
    hello.mutable_hello()->set_version("rogue");
    hello.mutable_hello()->set_boot_id(o_.Get("boot-id", "rogue-boot"));
    v1::GatewayMessage answer;
    if (!stream->Write(hello) || !stream->Read(&answer)) {
      Print(StatusJson(stream->Finish()));
      return false;
    }
    if (!answer.has_welcome()) {
      Print({{"result", "unexpected"}, {"message", answer.ShortDebugString()}});
      return false;
    }
    return true;
  }

  int RunHello() {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::GatewayMessage>> stream;
    if (!Hello(ctx, stream)) return 0;
    Print({{"result", "welcome"}});
    const int hold_ms = std::atoi(o_.Get("hold-ms", "0").c_str());
    if (hold_ms <= 0) {
      ctx.TryCancel();
      return 0;
    }
    // Still open after hold_ms? A heartbeat write fails once the gateway ended the stream.
    std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
    v1::AgentMessage beat;
    beat.mutable_heartbeat()->set_sent_unix_ms(1);
    if (stream->Write(beat)) {
      Print({{"result", "held"}});
      ctx.TryCancel();
      return 0;
    }
    Print(StatusJson(stream->Finish()));
    return 0;
  }

  int RunForge() {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::GatewayMessage>> stream;
    if (!Hello(ctx, stream)) return 0;
    v1::AgentMessage message;
    v1::AgentEvent* event = message.mutable_events()->add_events();
    event->set_seq(1);
    v1::StatementEvent* statement = event->mutable_statement();
    statement->set_session_id(o_.Need("session"));
    statement->set_time_unix_us(std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
    statement->set_protocol("simple");
    if (o_.Has("statement-bytes")) {
      const size_t n = std::strtoull(o_.Get("statement-bytes").c_str(), nullptr, 10);
      std::string text = "DROP TABLE forged /*";
      text.resize(n > text.size() + 2 ? n - 2 : text.size(), 'x');
      text += "*/";
      statement->set_statement(std::move(text));
    } else {
      statement->set_statement(o_.Get("statement", "DROP TABLE customers"));
    }
    statement->set_command_tag("DROP TABLE");
    statement->set_rows(-1);
    statement->set_decision("allowed");
    uint64_t last = 1;
    if (o_.Has("ended")) {
      v1::AgentEvent* ended = message.mutable_events()->add_events();
      ended->set_seq(++last);
      ended->mutable_session_ended()->set_session_id(o_.Need("session"));
      ended->mutable_session_ended()->set_reason("client_terminate");
    }
    if (!stream->Write(message)) {
      Print(StatusJson(stream->Finish()));
      return 0;
    }
    v1::GatewayMessage answer;
    while (stream->Read(&answer)) {
      if (answer.has_ack() && answer.ack().seq() >= last) {
        Print({{"result", "ack"}, {"seq", answer.ack().seq()}});
        ctx.TryCancel();
        return 0;
      }
    }
    Print(StatusJson(stream->Finish()));
    return 0;
  }

  int RunFloodSessions() {
    const int count = std::atoi(o_.Need("count").c_str());
    if (count <= 0 || count > 100000) Usage("--count must be 1..100000");
    struct Call {
      grpc::ClientContext ctx;
      std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::SessionFrame, v1::SessionFrame>> stream;
      grpc::Status status;
    };
    grpc::CompletionQueue cq;
    std::vector<std::unique_ptr<Call>> calls(static_cast<size_t>(count));
    const auto started = std::chrono::steady_clock::now();
    // Tags: 2i = stream i started, 2i+1 = stream i finished.
    for (int i = 0; i < count; ++i) {
      calls[i] = std::make_unique<Call>();
      Prepare(calls[i]->ctx);
      calls[i]->stream = stub_->AsyncSession(&calls[i]->ctx, &cq, reinterpret_cast<void*>(intptr_t{2} * i));
    }
    std::map<int, int> codes;
    int finished = 0;
    void* tag = nullptr;
    bool ok = false;
    while (finished < count && cq.Next(&tag, &ok)) {
      const auto n = reinterpret_cast<intptr_t>(tag);
      Call& call = *calls[static_cast<size_t>(n / 2)];
      if (n % 2 == 0) {
        // Started or not, Finish reports how the gateway ended it.
        call.stream->Finish(&call.status, reinterpret_cast<void*>(n + 1));
      } else {
        ++codes[static_cast<int>(call.status.error_code())];
        ++finished;
      }
    }
    Json by_code = Json::object();
    for (const auto& [code, n] : codes) by_code[std::to_string(code)] = n;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    Print({{"result", "flood"}, {"streams", finished}, {"codes", by_code}, {"seconds", seconds}});
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return 0;
  }

  int RunOpenSession() {
    grpc::ClientContext ctx;
    Prepare(ctx);
    auto stream = stub_->Session(&ctx);
    v1::SessionFrame first;
    first.mutable_opened()->set_session_id(o_.Need("session"));
    first.mutable_opened()->set_ok(true);
    first.set_message_boundary(true);
    stream->Write(first);
    v1::SessionFrame frame;
    size_t frames = 0;
    while (stream->Read(&frame)) ++frames;
    Json out = StatusJson(stream->Finish());
    out["frames"] = frames;  // bytes the gateway relayed to us: must stay 0
    Print(out);
    return 0;
  }

 private:
  const Options& o_;
  std::string token_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  Rogue rogue(options);
  if (options.command == "hello") return rogue.RunHello();
  if (options.command == "forge-statement") return rogue.RunForge();
  if (options.command == "open-session") return rogue.RunOpenSession();
  if (options.command == "flood-sessions") return rogue.RunFloodSessions();
  Usage("unknown command " + options.command);
}
