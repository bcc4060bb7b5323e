// The agent's end of one AgentService.Session stream, awaitable from the session's strand.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <memory>
#include <string>

#include "common/net/async_signal.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent {

// gRPC callback reactor (one read and one write in flight) bridged to asio: each Read/Write
// starts the operation and awaits its completion, which gives end-to-end backpressure: the
// session reads the next chunk only after the previous one was handed to gRPC.
class SessionStream : public grpc::ClientBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame> {
 public:
  SessionStream(pgward::v1::AgentService::Stub& stub, const asio::any_io_executor& executor,
                const std::string& agent_name, const std::string& agent_token)
      : read_done_(executor), write_done_(executor), done_(executor) {
    context_.AddMetadata("authorization", "Bearer " + agent_token);
    context_.AddMetadata("x-pgward-agent", agent_name);
    stub.async()->Session(&context_, this);
    StartCall();
  }

  // Valid after Read() returned true, until the next Read().
  pgward::v1::SessionFrame& incoming() { return incoming_; }
  // Fill before Write(); untouchable until Write() returns.
  pgward::v1::SessionFrame& outgoing() { return outgoing_; }

  asio::awaitable<bool> Read() {
    StartRead(&incoming_);
    co_return co_await read_done_.Wait();
  }
  asio::awaitable<bool> Write() {
    StartWrite(&outgoing_);
    co_return co_await write_done_.Wait();
  }
  // Half-close: the gateway sees end-of-stream and finishes the call.
  asio::awaitable<bool> CloseWrites() {
    StartWritesDone();
    co_return co_await write_done_.Wait();
  }
  void Cancel() { context_.TryCancel(); }
  // Must be awaited before destruction: gRPC calls OnDone once every operation is over.
  asio::awaitable<void> Finished() { co_await done_.Wait(); }

  void OnReadDone(bool ok) override { read_done_.Post(ok); }
  void OnWriteDone(bool ok) override { write_done_.Post(ok); }
  void OnWritesDoneDone(bool ok) override { write_done_.Post(ok); }
  void OnDone(const grpc::Status&) override { done_.Post(true); }

 private:
  grpc::ClientContext context_;
  pgward::v1::SessionFrame incoming_;
  pgward::v1::SessionFrame outgoing_;
  net::AsyncSignal read_done_;
  net::AsyncSignal write_done_;
  net::AsyncSignal done_;
};

}  // namespace pgward::agent
