// Hands completions from gRPC reactions to the coroutine that waits for them, one at a time.
#pragma once

#include <asio.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace pgward::net {

// gRPC reactions run on gRPC's threads; a session's coroutines run on its SerialExecutor. The
// reaction Post()s the `ok` flag of a finished operation and the coroutine co_awaits Wait().
// The waiting coroutine is resumed through its own executor with blocking.possibly, so on a
// SerialExecutor it runs inline in the reaction when the session is idle (no thread hand-off),
// and is queued behind the session's running work otherwise.
//
// One value is kept when nobody waits (each stream has at most one read and one write in
// flight, so there is never a second). Post() must not be called with a lock held that the
// resumed coroutine could take.
class AsyncSignal {
 public:
  explicit AsyncSignal(const asio::any_io_executor& executor) : executor_(executor) {}
  AsyncSignal(const AsyncSignal&) = delete;
  AsyncSignal& operator=(const AsyncSignal&) = delete;

  void Post(bool ok) {
    std::unique_ptr<Waiter> waiter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      if (!waiter_) {
        if (!value_) value_ = ok;
        return;
      }
      waiter = std::move(waiter_);
    }
    waiter->Complete(ok);
  }

  // Returns false when the operation failed or the signal was closed.
  asio::awaitable<bool> Wait() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) co_return false;
      if (value_) {
        const bool ok = *value_;
        value_.reset();
        co_return ok;
      }
    }
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
        [this](auto handler) {
          std::optional<bool> ready;
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (closed_) {
              ready = false;
            } else if (value_) {
              ready = *value_;
              value_.reset();
            } else {
              // `||` (awaitable_operators) cancels the loser and waits for it: support that.
              auto slot = asio::get_associated_cancellation_slot(handler);
              if (slot.is_connected()) {
                slot.assign([this](asio::cancellation_type) { Cancel(); });
              }
              waiter_ = std::make_unique<WaiterFor<decltype(handler)>>(std::move(handler));
              return;
            }
          }
          // Posted between the check above and now: complete later, never inside the initiation.
          auto ex = asio::get_associated_executor(handler, executor_);
          asio::post(ex, [handler = std::move(handler), ok = *ready]() mutable { std::move(handler)(ok); });
        },
        asio::use_awaitable);
  }

  // Fails the current Wait(), if any (a cancellation); later ones wait as usual.
  void Cancel() {
    std::unique_ptr<Waiter> waiter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiter = std::move(waiter_);
    }
    if (waiter) waiter->Complete(false);
  }

  // Fails the current and every later Wait().
  void Close() {
    std::unique_ptr<Waiter> waiter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      waiter = std::move(waiter_);
    }
    if (waiter) waiter->Complete(false);
  }

 private:
  struct Waiter {
    virtual ~Waiter() = default;
    virtual void Complete(bool ok) = 0;
  };
  template <typename Handler>
  struct WaiterFor final : Waiter {
    explicit WaiterFor(Handler h) : handler(std::move(h)) {}
    void Complete(bool ok) override {
      auto ex = asio::get_associated_executor(handler);
      asio::dispatch(ex, [handler = std::move(handler), ok]() mutable {
        // The slot is cleared here, on the handler's executor, because that is where `||`
        // emits its cancellation (on completing the other branch): clearing it on the posting
        // thread raced that emit. Until now the slot may still call Cancel(), which finds no
        // waiter and does nothing.
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.clear();
        std::move(handler)(ok);
      });
    }
    Handler handler;
  };

  asio::any_io_executor executor_;
  std::mutex mu_;
  std::unique_ptr<Waiter> waiter_;
  std::optional<bool> value_;
  bool closed_ = false;
};

// The completions of one gRPC stream (one read and one write in flight, then done), shared by
// its reactor and the coroutine that drives it.
struct StreamCompletions {
  explicit StreamCompletions(const asio::any_io_executor& executor)
      : read_done(executor), write_done(executor), done(executor) {}
  AsyncSignal read_done;
  AsyncSignal write_done;
  AsyncSignal done;
};

}  // namespace pgward::net
