// The one thread that polls gRPC for every call of a process (completion-queue API).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>

namespace pgward::net {

// What a completion-queue operation hands back: Done runs on the driver's thread.
class GrpcTag {
 public:
  virtual ~GrpcTag() = default;
  virtual void Done(bool ok) = 0;
};

// gRPC's callback API runs reactions on an internal pool of at least two "nexting" threads
// that take turns polling, so every completion woke a second thread (bench/NOTES.md: about
// half of the relay's CPU per statement was thread hand-off). With the completion-queue API
// and a single thread of ours calling Next(), that thread both polls the connection and runs
// the completion, which resumes the session inline (SerialExecutor). One thread, not several:
// with gRPC's epoll1 poller only one thread polls at a time, and several would hand the poller
// role to each other on every event. For the same reason a process must not mix this with any
// callback service: the callback CQ's threads would join the poller rotation.
//
// Every call must have finished (its last tag returned) before the driver is destroyed; a
// server must be shut down (grpc::Server::Shutdown) before its driver is.
class GrpcDriver {
 public:
  // For a client's calls.
  GrpcDriver() : GrpcDriver(std::make_unique<grpc::CompletionQueue>()) {}
  // For a server's calls: the queue of ServerBuilder::AddCompletionQueue().
  explicit GrpcDriver(std::unique_ptr<grpc::ServerCompletionQueue> cq)
      : GrpcDriver(std::unique_ptr<grpc::CompletionQueue>(cq.get())) {
    server_cq_ = cq.release();
  }
  ~GrpcDriver() {
    cq_->Shutdown();
    thread_.join();
  }
  GrpcDriver(const GrpcDriver&) = delete;
  GrpcDriver& operator=(const GrpcDriver&) = delete;

  grpc::CompletionQueue* cq() { return cq_.get(); }
  // Null unless the driver was made for a server.
  grpc::ServerCompletionQueue* server_cq() { return server_cq_; }

 private:
  explicit GrpcDriver(std::unique_ptr<grpc::CompletionQueue> cq) : cq_(std::move(cq)), thread_([this] { Loop(); }) {}

  void Loop() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_->Next(&tag, &ok)) static_cast<GrpcTag*>(tag)->Done(ok);
  }

  std::unique_ptr<grpc::CompletionQueue> cq_;
  grpc::ServerCompletionQueue* server_cq_ = nullptr;  // the same queue as cq_, when it is a server's
  std::thread thread_;
};

}  // namespace pgward::net
