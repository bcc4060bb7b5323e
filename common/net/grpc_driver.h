// The one thread that polls gRPC for every call of a process (completion-queue API).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
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
// The server calls alive on a driver's queue: requested and waiting for a caller, or running.
// An operation started on a queue that was shut down aborts the process (gRPC asserts in
// grpc_cq_begin_op), and a call cancelled by the server's shutdown still runs its reactions
// (a failed read, then the Finish), so the driver waits for its calls to end before it shuts
// its queue down.
class ServerCallCount {
 public:
  // Counts one call for as long as it lives; declare it as a call's first member, so that it
  // counts the call out after everything else of it is gone.
  class Ticket {
   public:
    explicit Ticket(ServerCallCount& count) : count_(count) { count_.Add(); }
    ~Ticket() { count_.Remove(); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    ServerCallCount& count_;
  };

  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++live_;
  }
  void Remove() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--live_ == 0) idle_.notify_all();
  }
  // False if calls were still alive at the deadline.
  bool WaitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_.wait_for(lock, timeout, [this] { return live_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int live_ = 0;  // guarded by mu_
};

// Every call must have finished (its last tag returned) before the driver is destroyed; a
// server must be shut down (grpc::Server::Shutdown) before its driver is, and the driver then
// waits for the server calls the shutdown cancelled to end (ServerCallCount).
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
    // A shut-down server cancels every call at once; their reactions take milliseconds. A call
    // held by work that never ends must not hang the process for ever.
    (void)server_calls_.WaitIdle(std::chrono::seconds(10));
    cq_->Shutdown();
    thread_.join();
  }
  GrpcDriver(const GrpcDriver&) = delete;
  GrpcDriver& operator=(const GrpcDriver&) = delete;

  grpc::CompletionQueue* cq() { return cq_.get(); }
  // Null unless the driver was made for a server.
  grpc::ServerCompletionQueue* server_cq() { return server_cq_; }
  // The server calls on this queue (grpc_server_calls.h keeps it).
  ServerCallCount& server_calls() { return server_calls_; }

 private:
  explicit GrpcDriver(std::unique_ptr<grpc::CompletionQueue> cq) : cq_(std::move(cq)), thread_([this] { Loop(); }) {}

  void Loop() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_->Next(&tag, &ok)) static_cast<GrpcTag*>(tag)->Done(ok);
  }

  std::unique_ptr<grpc::CompletionQueue> cq_;
  grpc::ServerCompletionQueue* server_cq_ = nullptr;  // the same queue as cq_, when it is a server's
  ServerCallCount server_calls_;
  std::thread thread_;
};

}  // namespace pgward::net
