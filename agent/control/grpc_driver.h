// The one thread that polls gRPC for every call the agent makes (completion-queue API).
#pragma once

#include <grpcpp/grpcpp.h>

#include <thread>

namespace pgward::agent {

// What a completion-queue operation hands back: Done runs on the driver's thread.
class GrpcTag {
 public:
  virtual ~GrpcTag() = default;
  virtual void Done(bool ok) = 0;
};

// gRPC's callback API runs reactions on an internal pool of at least two "nexting" threads
// that take turns polling, so every completion woke a second thread (bench/NOTES.md: about
// half of the agent's CPU per statement was thread hand-off). With the completion-queue API
// and a single thread of ours calling Next(), that thread both polls the gateway connection
// and runs the completion, which resumes the session inline (SerialExecutor). One thread,
// not several: with gRPC's epoll1 poller only one thread polls at a time, and several would
// hand the poller role to each other on every event.
//
// Every call must have finished (its last tag returned) before the driver is destroyed.
class GrpcDriver {
 public:
  GrpcDriver() : thread_([this] { Loop(); }) {}
  ~GrpcDriver() {
    cq_.Shutdown();
    thread_.join();
  }
  GrpcDriver(const GrpcDriver&) = delete;
  GrpcDriver& operator=(const GrpcDriver&) = delete;

  grpc::CompletionQueue* cq() { return &cq_; }

 private:
  void Loop() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) static_cast<GrpcTag*>(tag)->Done(ok);
  }

  grpc::CompletionQueue cq_;
  std::thread thread_;
};

}  // namespace pgward::agent
