// An executor that runs one session's work one piece at a time, on whichever thread brings it.
#pragma once

#include <asio.hpp>

#include <deque>
#include <memory>
#include <mutex>
#include <utility>

namespace pgward::net {

// A relay session is driven by two kinds of threads: asio's (its sockets became readable or
// writable) and gRPC's (a read or write on its session stream completed). With an asio strand
// every gRPC completion had to be handed to an asio thread (a futex wake and a context switch,
// twice per statement in each direction; bench/NOTES.md section 1). This executor gives the same
// guarantee a strand gives, that at most one piece of the session's work runs at a time, but
// runs the work on the thread that submits it when the session is idle: a gRPC completion
// resumes the session's coroutine right there in the reaction, which writes to the socket
// without blocking and starts the next gRPC read. Work submitted while another thread runs the
// session is queued and run by that thread before it lets go, so nothing waits on a lock for
// long and no thread is woken for it.
//
// Rules that follow, for code running on it:
// - Never block: the thread may be gRPC's (sockets are written with non-blocking attempts
//   first, see MaybeTlsStream; slow work goes to a pool with co_spawn).
// - Never hold a lock while completing something that may resume a session (AsyncSignal::Post,
//   a gRPC Start*/TryCancel, which may run reactions inline): the session would run under it.
// - `asio::post` (blocking.never) still goes through the io_context: it is for the rare places
//   that must not run inline, such as starting a session from inside another one.
class SerialExecutor {
 public:
  // A fresh, idle serializer on `io`; copies share it.
  static SerialExecutor Make(asio::io_context& io) { return SerialExecutor(io.get_executor(), std::make_shared<State>(), false); }

  asio::io_context& query(asio::execution::context_t) const noexcept { return asio::query(io_, asio::execution::context); }
  asio::execution::blocking_t query(asio::execution::blocking_t) const noexcept {
    return never_ ? asio::execution::blocking_t(asio::execution::blocking.never)
                  : asio::execution::blocking_t(asio::execution::blocking.possibly);
  }
  SerialExecutor require(asio::execution::blocking_t::never_t) const { return SerialExecutor(io_, state_, true); }
  SerialExecutor require(asio::execution::blocking_t::possibly_t) const { return SerialExecutor(io_, state_, false); }

  template <typename Function>
  void execute(Function&& f) const {
    if (never_) {
      // Through the io_context, then in order with the session's other work.
      asio::post(io_, [self = SerialExecutor(io_, state_, false), f = std::forward<Function>(f)]() mutable {
        self.execute(std::move(f));
      });
      return;
    }
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->running) {
        state_->queue.push_back(std::make_unique<Task<std::decay_t<Function>>>(std::forward<Function>(f)));
        return;
      }
      state_->running = true;
    }
    Run(std::forward<Function>(f));
  }

  friend bool operator==(const SerialExecutor& a, const SerialExecutor& b) noexcept {
    return a.state_ == b.state_ && a.never_ == b.never_;
  }
  friend bool operator!=(const SerialExecutor& a, const SerialExecutor& b) noexcept { return !(a == b); }

 private:
  // Runs nothing; posted to restart draining a queue (one type, so Run<Nothing> is finite).
  struct Nothing {
    void operator()() const {}
  };
  struct TaskBase {
    virtual ~TaskBase() = default;
    virtual void Run() = 0;
  };
  template <typename F>
  struct Task final : TaskBase {
    explicit Task(F&& f) : f(std::move(f)) {}
    explicit Task(const F& f) : f(f) {}
    void Run() override { std::move(f)(); }
    F f;
  };
  struct State {
    std::mutex mu;  // a std::mutex: ThreadSanitizer sees it (Debian's Abseil is not instrumented)
    bool running = false;
    std::deque<std::unique_ptr<TaskBase>> queue;
  };

  SerialExecutor(asio::io_context::executor_type io, std::shared_ptr<State> state, bool never)
      : io_(std::move(io)), state_(std::move(state)), never_(never) {}

  // Runs `f`, then whatever was queued meanwhile, then lets go. Exceptions do not escape
  // session code (coroutines catch their own); should one, the serializer is released so the
  // session is not wedged, what was queued behind it is run from the io_context, and the
  // exception goes on to the thread's loop.
  template <typename Function>
  void Run(Function&& f) const {
    struct Release {
      const SerialExecutor* self;
      bool armed = true;
      ~Release() {
        if (!armed) return;
        bool queued;
        {
          std::lock_guard<std::mutex> lock(self->state_->mu);
          self->state_->running = false;
          queued = !self->state_->queue.empty();
        }
        if (queued) self->require(asio::execution::blocking.never).execute(Nothing{});
      }
    } release{this};
    std::move(f)();
    for (;;) {
      std::unique_ptr<TaskBase> next;
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        if (state_->queue.empty()) {
          state_->running = false;
          release.armed = false;
          return;
        }
        next = std::move(state_->queue.front());
        state_->queue.pop_front();
      }
      next->Run();
    }
  }

  asio::io_context::executor_type io_;
  std::shared_ptr<State> state_;
  bool never_ = false;
};

}  // namespace pgward::net
