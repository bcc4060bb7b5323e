// Server calls on the completion-queue API (GrpcDriver), shaped like gRPC's callback reactors.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "common/net/grpc_driver.h"

namespace pgward::net {

// A whole process serves its calls on one GrpcDriver thread (see grpc_driver.h for why). These
// types give a service's code the shape of gRPC's callback API (one reactor per stream, one
// read and one write in flight, OnDone owns deletion) on top of that queue:
//  - BidiAcceptor requests the calls of one bidi method and hands each that arrives to a
//    factory, which creates its ServerBidiReactor;
//  - UnaryMethod requests the calls of one unary method and runs its handler on an executor
//    of the caller's choosing (never the driver's thread, which every session shares).

template <typename Incoming, typename Outgoing>
class ServerBidiReactor;

// What gRPC fills in when a bidi call arrives, before a reactor exists for it. Owned by the
// acceptor until the call arrives, then by its reactor.
template <typename Incoming, typename Outgoing>
class ServerBidiCall {
 public:
  explicit ServerBidiCall(ServerCallCount& count) : ticket_(count) { context_.AsyncNotifyWhenDone(&done_tag_); }
  ServerBidiCall(const ServerBidiCall&) = delete;
  ServerBidiCall& operator=(const ServerBidiCall&) = delete;

  grpc::ServerContext& context() { return context_; }
  grpc::ServerAsyncReaderWriter<Outgoing, Incoming>& stream() { return stream_; }

 private:
  friend class ServerBidiReactor<Incoming, Outgoing>;
  enum class Op { kRead, kWrite, kFinish, kDone };
  class Tag final : public GrpcTag {
   public:
    Tag(ServerBidiCall* call, Op op) : call_(call), op_(op) {}
    void Done(bool ok) override { call_->reactor_->OnTag(op_, ok); }

   private:
    ServerBidiCall* call_;
    Op op_;
  };

  ServerCallCount::Ticket ticket_;  // first: counted out after everything else is gone
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<Outgoing, Incoming> stream_{&context_};
  ServerBidiReactor<Incoming, Outgoing>* reactor_ = nullptr;  // set once the call arrived
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};  // AsyncNotifyWhenDone: the call is over (finished or cancelled)
};

// One server bidi stream. Created by the acceptor's factory on the driver's thread, right when
// the call arrived. The rules are the callback API's:
//  - at most one read and one write in flight; StartRead/StartWrite may be called from any
//    thread, and are refused (false, nothing started) once Finish was called;
//  - Finish once; it waits for a write in flight to complete (gRPC must not see a Write and
//    the Finish at the same time), and must eventually be called, also after OnCancel;
//  - work started outside a reaction (another thread, a pool) holds the call with AddHold and
//    lets go with RemoveHold;
//  - OnDone runs once every operation has completed, the Finish included, and no hold is left;
//    it owns deletion (`delete this` is the usual body).
// Reactions run on the driver's thread, except OnDone, which runs where the last operation or
// hold ended.
template <typename Incoming, typename Outgoing>
class ServerBidiReactor {
 public:
  using Call = ServerBidiCall<Incoming, Outgoing>;

  explicit ServerBidiReactor(std::unique_ptr<Call> call) : call_(std::move(call)) { call_->reactor_ = this; }
  virtual ~ServerBidiReactor() = default;
  ServerBidiReactor(const ServerBidiReactor&) = delete;
  ServerBidiReactor& operator=(const ServerBidiReactor&) = delete;

  grpc::ServerContext& context() { return call_->context_; }

  bool StartRead(Incoming* message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_) return false;
      Begin();  // under mu_: the initial hold is still held, so the call cannot end meanwhile
    }
    call_->stream_.Read(message, &call_->read_tag_);
    return true;
  }
  // `message` must stay untouched until OnWriteDone.
  bool StartWrite(const Outgoing* message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_) return false;
      write_in_flight_ = true;
      Begin();
    }
    call_->stream_.Write(*message, &call_->write_tag_);
    return true;
  }
  void Finish(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      if (write_in_flight_) {
        deferred_finish_ = std::move(status);
        return;
      }
    }
    StartFinish(status);
  }
  // Any thread, any time: pending operations complete with ok=false, OnCancel follows.
  void TryCancel() { call_->context_.TryCancel(); }
  void AddHold() { Begin(); }
  void RemoveHold() { End(); }

 protected:
  virtual void OnReadDone(bool /*ok*/) {}
  virtual void OnWriteDone(bool /*ok*/) {}
  // The peer went away or the call was cancelled (also by the server's shutdown).
  virtual void OnCancel() {}
  virtual void OnDone() = 0;

 private:
  friend class ServerBidiCall<Incoming, Outgoing>;

  void Begin() { outstanding_.fetch_add(1, std::memory_order_relaxed); }
  // The last one out runs OnDone; nothing of `this` is touched afterwards.
  void End() {
    if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) OnDone();
  }
  // The hold every call starts with is given back before the Finish is issued, never after:
  // so OnDone cannot run inside Finish() (it runs where the last operation comes back).
  void StartFinish(const grpc::Status& status) {
    Begin();
    End();
    call_->stream_.Finish(status, &call_->finish_tag_);
  }

  void OnTag(typename Call::Op op, bool ok) {
    switch (op) {
      case Call::Op::kRead:
        OnReadDone(ok);
        break;
      case Call::Op::kWrite: {
        std::optional<grpc::Status> deferred;
        {
          std::lock_guard<std::mutex> lock(mu_);
          write_in_flight_ = false;
          deferred.swap(deferred_finish_);
        }
        if (deferred) StartFinish(*deferred);
        OnWriteDone(ok);
        break;
      }
      case Call::Op::kFinish:
        break;
      case Call::Op::kDone:
        if (call_->context_.IsCancelled()) OnCancel();
        break;
    }
    End();
  }

  std::unique_ptr<Call> call_;
  // The initial hold (released when the Finish starts) and the done tag, which gRPC returns
  // for every call that arrived.
  std::atomic<int> outstanding_{2};
  std::mutex mu_;
  bool finish_requested_ = false;   // guarded by mu_
  bool write_in_flight_ = false;    // guarded by mu_
  std::optional<grpc::Status> deferred_finish_;  // guarded by mu_
};

// Keeps one request outstanding for a bidi method and hands every call that arrives to
// `factory` (on the driver's thread), which creates the call's reactor. Deletes itself when the
// server shuts down.
template <typename Incoming, typename Outgoing>
class BidiAcceptor final : public GrpcTag {
 public:
  using Call = ServerBidiCall<Incoming, Outgoing>;
  // Requests one call: e.g. service.RequestSession(context, stream, cq, cq, tag).
  using Requester = std::function<void(grpc::ServerContext*, grpc::ServerAsyncReaderWriter<Outgoing, Incoming>*,
                                       grpc::ServerCompletionQueue*, void*)>;
  using Factory = std::function<void(std::unique_ptr<Call>)>;

  // Call after the server started; `driver` polls the server's queue.
  static void Start(Requester requester, GrpcDriver& driver, Factory factory) {
    (new BidiAcceptor(std::move(requester), driver, std::move(factory)))->Request();
  }

  void Done(bool ok) override {
    if (!ok) {  // the server is shutting down
      delete this;
      return;
    }
    std::unique_ptr<Call> arrived = std::move(call_);
    Request();
    factory_(std::move(arrived));
  }

 private:
  BidiAcceptor(Requester requester, GrpcDriver& driver, Factory factory)
      : requester_(std::move(requester)), driver_(driver), factory_(std::move(factory)) {}
  void Request() {
    call_ = std::make_unique<Call>(driver_.server_calls());
    requester_(&call_->context(), &call_->stream(), driver_.server_cq(), this);
  }

  Requester requester_;
  GrpcDriver& driver_;
  Factory factory_;
  std::unique_ptr<Call> call_;
};

// Keeps one request outstanding for a unary method; each call's handler runs on `executor`
// and the response is sent from there.
template <typename Request, typename Response>
class UnaryMethod {
 public:
  // e.g. service.RequestListAgents(context, request, responder, cq, cq, tag).
  using Requester = std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                                       grpc::ServerCompletionQueue*, void*)>;
  using Handler = std::function<grpc::Status(grpc::ServerContext&, const Request&, Response&)>;

  // Call after the server started. Calls in progress when the server shuts down still finish;
  // keep `executor` running until grpc::Server::Shutdown returned.
  static void Start(Requester requester, GrpcDriver& driver, asio::any_io_executor executor, Handler handler) {
    auto method = std::make_shared<const Method>(Method{std::move(requester), driver.server_cq(),
                                                        &driver.server_calls(), std::move(executor),
                                                        std::move(handler)});
    new Pending(std::move(method));
  }

 private:
  struct Method {
    Requester requester;
    grpc::ServerCompletionQueue* cq;
    ServerCallCount* count;
    asio::any_io_executor executor;
    Handler handler;
  };

  // One call: requested, then handled, then finished.
  class Pending final : public GrpcTag {
   public:
    explicit Pending(std::shared_ptr<const Method> method)
        : ticket_(*method->count), method_(std::move(method)) {
      method_->requester(&context_, &request_, &responder_, method_->cq, this);
    }
    void Done(bool ok) override {
      if (arrived_ || !ok) {  // finished, or the server is shutting down
        delete this;
        return;
      }
      arrived_ = true;
      new Pending(method_);
      asio::post(method_->executor, [this] {
        const grpc::Status status = method_->handler(context_, request_, response_);
        responder_.Finish(response_, status, this);
      });
    }

   private:
    ServerCallCount::Ticket ticket_;  // first: counted out after everything else is gone
    std::shared_ptr<const Method> method_;
    grpc::ServerContext context_;
    Request request_;
    Response response_;
    grpc::ServerAsyncResponseWriter<Response> responder_{&context_};
    bool arrived_ = false;
  };
};

}  // namespace pgward::net
