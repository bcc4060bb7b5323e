// A scripted pgward agent for the gateway's AgentService: a gRPC client whose every step (hello,
// session open, bytes, drop) the test takes itself, so it controls exactly what the agent does.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway::testing {

using namespace std::chrono_literals;

// One client bidi stream on the synchronous API: a thread reads everything the gateway sends
// into an inbox; the test writes from its own thread. Destruction cancels the call and joins.
template <typename Outgoing, typename Incoming>
class ScriptedStream {
 public:
  using Opener = std::function<std::unique_ptr<grpc::ClientReaderWriter<Outgoing, Incoming>>(grpc::ClientContext*)>;

  ScriptedStream(const std::string& agent, const std::string& token, const Opener& open) {
    if (!agent.empty()) context_.AddMetadata("x-pgward-agent", agent);
    if (!token.empty()) context_.AddMetadata("authorization", "Bearer " + token);
    // Nothing a test does takes this long: a stuck stream fails the test instead of hanging it.
    context_.set_deadline(std::chrono::system_clock::now() + 60s);
    stream_ = open(&context_);
    reader_ = std::thread([this] { ReadAll(); });
  }
  ~ScriptedStream() {
    context_.TryCancel();
    reader_.join();
  }
  ScriptedStream(const ScriptedStream&) = delete;
  ScriptedStream& operator=(const ScriptedStream&) = delete;

  // False once the call is over.
  bool Write(const Outgoing& message) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (finished_) return false;
    return stream_->Write(message);
  }
  void WritesDone() {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (!finished_) stream_->WritesDone();
  }
  // What an agent process that dies does to its streams, as the gateway sees it.
  void Cancel() { context_.TryCancel(); }

  // The next message from the gateway, or nothing if none came within `timeout` (or the call ended).
  std::optional<Incoming> Next(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !inbox_.empty() || ended_; });
    if (inbox_.empty()) return std::nullopt;
    Incoming message = std::move(inbox_.front());
    inbox_.pop_front();
    return message;
  }
  // The status the call ended with, or nothing if it is still going after `timeout`.
  std::optional<grpc::Status> WaitEnd(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return ended_; })) return std::nullopt;
    return status_;
  }

 private:
  void ReadAll() {
    Incoming message;
    while (stream_->Read(&message)) {
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(std::move(message));
      cv_.notify_all();
    }
    grpc::Status status;
    {
      // Finish may not overlap a Write of the test's thread.
      std::lock_guard<std::mutex> lock(write_mu_);
      finished_ = true;
      status = stream_->Finish();
    }
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
    ended_ = true;
    cv_.notify_all();
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<Outgoing, Incoming>> stream_;
  std::mutex write_mu_;
  bool finished_ = false;  // guarded by write_mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Incoming> inbox_;  // guarded by mu_
  bool ended_ = false;          // guarded by mu_
  grpc::Status status_;         // guarded by mu_
  std::thread reader_;
};

using ControlCall = ScriptedStream<pgward::v1::AgentMessage, pgward::v1::GatewayMessage>;
using SessionCall = ScriptedStream<pgward::v1::SessionFrame, pgward::v1::SessionFrame>;

class FakeAgent {
 public:
  FakeAgent(std::shared_ptr<grpc::Channel> channel, std::string name, std::string token)
      : stub_(pgward::v1::AgentService::NewStub(channel)), name_(std::move(name)), token_(std::move(token)) {}

  // A Control stream with this agent's credentials, nothing sent yet.
  std::unique_ptr<ControlCall> OpenControl(const std::string& name, const std::string& token) {
    return std::make_unique<ControlCall>(name, token, [this](grpc::ClientContext* context) {
      return stub_->Control(context);
    });
  }
  std::unique_ptr<SessionCall> OpenSessionStream(const std::string& name, const std::string& token) {
    return std::make_unique<SessionCall>(name, token, [this](grpc::ClientContext* context) {
      return stub_->Session(context);
    });
  }

  // Opens the control stream, says hello and waits for the welcome: the agent is online then.
  bool Connect() {
    control_ = OpenControl(name_, token_);
    pgward::v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_name(name_);
    hello.mutable_hello()->set_version("fake-agent");
    hello.mutable_hello()->set_boot_id("boot-" + name_);
    if (!control_->Write(hello)) return false;
    auto welcome = control_->Next();
    return welcome && welcome->has_welcome();
  }
  ControlCall& control() { return *control_; }
  // Connects again as the same process (same boot id) while the old stream is still open, as an
  // agent does that lost its connection before the gateway noticed; returns the old stream.
  std::unique_ptr<ControlCall> Reconnect() {
    auto old = std::move(control_);
    if (!Connect()) return nullptr;
    return old;
  }
  // Drops the control stream as a dying agent process would.
  void DropControl() {
    if (control_) control_->Cancel();
  }

  // The next control message of the given kind, skipping others (acks).
  std::optional<pgward::v1::GatewayMessage> NextControl(pgward::v1::GatewayMessage::MsgCase kind,
                                                        std::chrono::milliseconds timeout = 10s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      auto message = control_->Next(left);
      if (!message) return std::nullopt;
      if (message->msg_case() == kind) return message;
    }
  }
  std::optional<pgward::v1::SessionGrant> NextGrant(std::chrono::milliseconds timeout = 10s) {
    auto message = NextControl(pgward::v1::GatewayMessage::kSessionGrant, timeout);
    if (!message) return std::nullopt;
    return message->session_grant();
  }

  // Opens the Session stream for `session_id` and sends `opened` (the upstream login's outcome).
  std::unique_ptr<SessionCall> OpenSession(const std::string& session_id, bool ok = true,
                                           const std::string& failure = "") {
    auto call = OpenSessionStream(name_, token_);
    pgward::v1::SessionFrame first;
    auto* opened = first.mutable_opened();
    opened->set_session_id(session_id);
    opened->set_ok(ok);
    if (ok) {
      auto* parameter = opened->add_parameters();
      parameter->set_name("server_version");
      parameter->set_value("15.99-fake");
    } else {
      opened->set_sqlstate("28P01");
      opened->set_message(failure);
    }
    call->Write(first);
    return call;
  }

  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<pgward::v1::AgentService::Stub> stub_;
  std::string name_;
  std::string token_;
  std::unique_ptr<ControlCall> control_;
};

}  // namespace pgward::gateway::testing
