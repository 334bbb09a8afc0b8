// pipelined plugin SDK: the only header a stage plugin author includes.
//
// A stage that computes derives from Stage; its run() holds a pool thread until it returns:
//
//   class Ocr : public pipelined::sdk::Stage {
//    public:
//     explicit Ocr(const nlohmann::json& config);
//     pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override;
//   };
//   PIPELINED_PLUGIN(Ocr, "menu_ocr_tesseract", "1.0.0", "ocr", "serial")
//
// A stage that waits on providers derives from AsyncStage; its run() is a coroutine that holds no
// thread while it waits (co_await on RequestSet::finished, Context::next_item_async or another Task):
//
//   class Describe : public pipelined::sdk::AsyncStage {
//     pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input,
//                                                       pipelined::sdk::Context& ctx) override;
//   };
//
// Header-only sugar over plugin_abi.h. Exceptions never cross the boundary: anything thrown from the
// constructor or run() becomes an error result (StageError keeps its class, others are "internal").
#pragma once

#include <pipelined/payload.hpp>
#include <pipelined/plugin_abi.h>

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace pipelined::sdk {

// Thrown by a stage to fail with a specific error class (see PL_ERR_* in plugin_abi.h).
class StageError : public std::runtime_error {
 public:
  StageError(std::string error_class, const std::string& message)
      : std::runtime_error(message), error_class_(std::move(error_class)) {}
  const std::string& error_class() const { return error_class_; }

 private:
  std::string error_class_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string error_class;  // empty on success
  std::string error;
  int attempts = 0;
  bool ok() const { return error_class.empty() && status >= 200 && status < 300; }
};

struct HttpRequest {
  std::string provider;  // provider name from daemon config; empty: `path` is an absolute URL
  std::string method = "POST";
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::int64_t timeout_ms = 0;
};

// ---- coroutines --------------------------------------------------------------------------------

// The result of a coroutine, started when first awaited (lazily, so no completion can race the
// awaiter) and awaited once. The awaiting coroutine resumes on whatever thread the task ends on.
template <class T = void>
class [[nodiscard]] Task;

namespace detail {

struct TaskPromiseBase {
  std::coroutine_handle<> continuation;
  std::exception_ptr error;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      std::coroutine_handle<> next = h.promise().continuation;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : TaskPromiseBase {
  std::optional<T> value;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

// A coroutine nobody awaits: it runs until its end and frees itself.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // callers catch everything
  };
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::TaskPromise<T> {
    Task get_return_object() { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
  };

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation = awaiting;
    return handle_;  // start the task; it resumes `awaiting` when it ends
  }
  T await_resume() { return handle_.promise().take(); }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
// Runs `task` to its end and calls done(result, error) on the thread it ends on.
template <class T, class Done>
Detached start(Task<T> task, Done done) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      done(nullptr);
    } else {
      T value = co_await std::move(task);
      done(std::optional<T>(std::move(value)), nullptr);
    }
    co_return;
  } catch (...) {
    if constexpr (std::is_void_v<T>) done(std::current_exception());
    else done(std::optional<T>(), std::current_exception());
  }
}

inline void resume_handle(void* address) { std::coroutine_handle<>::from_address(address).resume(); }

// Whether the host has the services of asynchronous runs (complete, post, poll_item). A host that
// reads required_services refuses the plugin at load time already; an older one gets here.
inline bool host_runs_async(const pl_host_services* host) {
  return host->struct_size >= offsetof(pl_host_services, poll_item) + sizeof(host->poll_item);
}
}  // namespace detail

// One stage run of one request: deadline, cancellation, streaming, the worker pool, outbound HTTP.
class Context {
 public:
  Context(const pl_host_services* host, pl_run_context* ctx) : host_(host), ctx_(ctx) {}

  void log(pl_log_level level, const std::string& message) const { host_->log(ctx_, level, message.c_str()); }
  std::int64_t remaining_ms() const { return host_->remaining_ms(ctx_); }
  bool cancelled() const { return host_->is_cancelled(ctx_) != 0; }
  void throw_if_cancelled() const {
    if (cancelled()) throw StageError(PL_ERR_TIMEOUT, "request cancelled or past its deadline");
  }

  // Hands one item to downstream stages that consume this stage as a stream.
  void emit(const Payload& item) const {
    const EncodedPayload c(item);
    host_->emit_item(ctx_, &c.view());
  }

  // Next item of the upstream stream; false at the end of the stream. Throws when cancelled.
  bool next_item(Payload& item) const {
    pl_payload p{};
    int rc = host_->next_item(ctx_, &p);
    if (rc == PL_ITEM_END) return false;
    if (rc != PL_ITEM_OK) throw StageError(PL_ERR_TIMEOUT, "request cancelled while waiting for input items");
    item = decode_payload(p);
    return true;
  }

  // Runs fn(0..n-1) on the shared worker pool and waits; the first exception is rethrown here.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn) const {
    struct Job {
      const std::function<void(size_t)>* fn;
      size_t index;
      std::exception_ptr* error;
      std::mutex* mu;
    };
    std::exception_ptr error;
    std::mutex mu;
    std::vector<Job> jobs(n);
    pl_task_group* group = host_->group_create(ctx_);
    for (size_t i = 0; i < n; ++i) {
      jobs[i] = {&fn, i, &error, &mu};
      auto trampoline = [](void* arg) {
        auto* t = static_cast<Job*>(arg);
        try {
          (*t->fn)(t->index);
        } catch (...) {
          std::lock_guard<std::mutex> lock(*t->mu);
          if (!*t->error) *t->error = std::current_exception();
        }
      };
      if (host_->group_submit(group, trampoline, &jobs[i]) != PL_OK) trampoline(&jobs[i]);
    }
    host_->group_wait(group);
    host_->group_destroy(group);
    if (error) std::rethrow_exception(error);
  }

  // The next item of the upstream stream without holding a thread while none is there; nullopt at
  // the end of the stream. Throws when the run is cancelled. Needs an asynchronous host.
  Task<std::optional<Payload>> next_item_async() const {
    for (;;) {
      PollItem poll{this};
      const bool answered = co_await poll;
      if (answered) {
        if (poll.rc == PL_ITEM_END) co_return std::nullopt;
        if (poll.rc != PL_ITEM_OK) throw StageError(PL_ERR_TIMEOUT, "request cancelled while waiting for input items");
        co_return decode_payload(poll.item);
      }
      // Woken: the stream changed; poll again.
    }
  }

  // Runs fn(arg) on the worker pool (where work continues after a callback from the host).
  void post(void (*fn)(void*), void* arg) const { host_->post(ctx_, fn, arg); }

  const pl_host_services* host() const { return host_; }
  pl_run_context* raw() const { return ctx_; }

 private:
  // co_await yields true with rc/item set when the host answered at once, false after a wake.
  struct PollItem {
    const Context* self;
    int rc = PL_ITEM_PENDING;
    pl_payload item{};
    std::coroutine_handle<> handle;

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      handle = h;
      auto wake = [](void* user) {
        auto* poll = static_cast<PollItem*>(user);
        poll->self->post(&detail::resume_handle, poll->handle.address());
      };
      pl_payload item_now{};
      const int now = self->host_->poll_item(self->ctx_, &item_now, wake, this);
      if (now == PL_ITEM_PENDING) return true;  // `this` may be resumed and gone from here on
      rc = now;
      item = item_now;
      return false;
    }
    bool await_resume() const noexcept { return rc != PL_ITEM_PENDING; }
  };

  const pl_host_services* host_;
  pl_run_context* ctx_;
};

// Outbound requests of one stage run, handled as they complete without a thread waiting for them.
// handle(tag, response) runs on a pool thread, one call at a time, in completion order; it may
// submit more. finished() resumes the awaiting coroutine when nothing is in flight, or as soon as a
// handler throws (the exception is rethrown there; responses still to come are dropped) or the run
// is cancelled. Callbacks hold the shared state, so the set may go away with requests in flight.
class RequestSet {
 public:
  using Handler = std::function<void(std::size_t tag, const HttpResponse& response)>;

  RequestSet(const Context& ctx, Handler handle) : state_(std::make_shared<State>(ctx, std::move(handle))) {}
  ~RequestSet() {
    // The handler refers to its creator's locals: no call may run or start after this.
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->stopped = true;
    state_->idle.wait(lock, [&] { return !state_->draining; });
  }
  RequestSet(const RequestSet&) = delete;
  RequestSet& operator=(const RequestSet&) = delete;

  // Thread-safe; also from the handler.
  void submit(std::size_t tag, const HttpRequest& request) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      ++state_->in_flight;
    }
    std::vector<pl_http_header> headers;
    headers.reserve(request.headers.size());
    for (const auto& [k, v] : request.headers) headers.push_back({k.c_str(), v.c_str()});
    pl_http_request req{request.provider.empty() ? nullptr : request.provider.c_str(),
                        request.method.c_str(),
                        request.path.c_str(),
                        headers.data(),
                        headers.size(),
                        request.body.data(),
                        request.body.size(),
                        request.timeout_ms};
    struct Pending {
      std::shared_ptr<State> state;
      std::size_t tag;
    };
    auto callback = [](void* user, const pl_http_response* r) {
      std::unique_ptr<Pending> pending(static_cast<Pending*>(user));
      HttpResponse out;
      out.status = r->status;
      if (r->body) out.body.assign(r->body, r->body_size);
      if (r->error_class) out.error_class = r->error_class;
      if (r->error) out.error = r->error;
      out.attempts = r->attempts;
      State::deliver(pending->state, pending->tag, std::move(out));
    };
    auto pending = std::make_unique<Pending>(Pending{state_, tag});
    const Context& ctx = state_->ctx;
    if (ctx.host()->http_send(ctx.raw(), &req, callback, pending.get()) == PL_OK) {
      pending.release();  // owned by the callback now
      return;
    }
    HttpResponse out;
    out.error_class = PL_ERR_INTERNAL;
    out.error = "no outbound HTTP client is configured in this daemon";
    State::deliver(state_, tag, std::move(out));
  }

  // co_await set.finished(): see the class comment.
  auto finished() {
    struct Awaiter {
      std::shared_ptr<State> state;
      bool await_ready() const noexcept { return false; }  // await_suspend checks, under the lock
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard<std::mutex> lock(state->mu);
        if (state->done_locked()) return false;
        state->waiter = h;
        return true;
      }
      void await_resume() {
        std::exception_ptr error;
        {
          std::lock_guard<std::mutex> lock(state->mu);
          // Taken, not shared: the state may be freed on the thread of a late response while
          // the exception travels on.
          error = std::exchange(state->error, nullptr);
        }
        if (error) std::rethrow_exception(error);
      }
    };
    return Awaiter{state_};
  }

 private:
  struct State {
    State(const Context& c, Handler h) : ctx(c), handle(std::move(h)) {}
    const Context ctx;  // a copy: two pointers
    Handler handle;
    std::mutex mu;
    std::condition_variable idle;  // draining became false
    std::deque<std::pair<std::size_t, HttpResponse>> done;
    std::size_t in_flight = 0;  // submitted and not yet handled
    bool draining = false;      // a pool task is calling the handler
    bool stopped = false;       // a handler threw, the run was cancelled, or the set is gone
    std::exception_ptr error;
    std::coroutine_handle<> waiter;

    bool done_locked() const { return stopped || (in_flight == 0 && !draining); }

    // A response arrived (any thread): queue it; start a drain on the pool unless one runs.
    static void deliver(const std::shared_ptr<State>& self, std::size_t tag, HttpResponse response) {
      std::lock_guard<std::mutex> lock(self->mu);
      if (self->stopped) return;
      self->done.emplace_back(tag, std::move(response));
      if (self->draining) return;
      self->draining = true;
      auto* keep = new std::shared_ptr<State>(self);
      self->ctx.post([](void* arg) {
        std::unique_ptr<std::shared_ptr<State>> state(static_cast<std::shared_ptr<State>*>(arg));
        drain(*state);
      }, keep);
    }

    static void drain(const std::shared_ptr<State>& self) {
      std::unique_lock<std::mutex> lock(self->mu);
      while (!self->stopped && !self->done.empty()) {
        auto [tag, response] = std::move(self->done.front());
        self->done.pop_front();
        if (self->ctx.cancelled()) {
          self->error = std::make_exception_ptr(StageError(PL_ERR_TIMEOUT, "request cancelled or past its deadline"));
          self->stopped = true;
          break;
        }
        lock.unlock();
        std::exception_ptr error;
        try {
          self->handle(tag, response);
        } catch (...) {
          error = std::current_exception();
        }
        lock.lock();
        --self->in_flight;
        if (error && !self->error) {
          self->error = error;
          self->stopped = true;
        }
      }
      self->draining = false;
      self->idle.notify_all();
      if (self->waiter && self->done_locked()) {
        std::coroutine_handle<> waiter = std::exchange(self->waiter, {});
        lock.unlock();
        self->ctx.post(&detail::resume_handle, waiter.address());
      }
    }
  };

  std::shared_ptr<State> state_;
};

// Base class of a stage implementation that computes. One instance serves concurrent runs: keep
// run() free of unsynchronised mutable state.
class Stage {
 public:
  virtual ~Stage() = default;
  virtual Payload run(const Payload& input, Context& ctx) = 0;
};

// Base class of a stage implementation that waits on providers or on its input stream: run() is a
// coroutine, and no thread is held while it waits. `input` and `ctx` live until the task ends.
class AsyncStage {
 public:
  virtual ~AsyncStage() = default;
  virtual Task<Payload> run(const Payload& input, Context& ctx) = 0;
};

namespace detail {

struct Instance {
  std::unique_ptr<Stage> stage;            // one of the two is set
  std::unique_ptr<AsyncStage> async_stage;
  const pl_host_services* host;
};

inline void copy_message(pl_error* err, const char* message) {
  if (err == nullptr) return;
  std::strncpy(err->message, message, sizeof(err->message) - 1);
  err->message[sizeof(err->message) - 1] = '\0';
}

template <class StageT>
void* create(const char* config_json, size_t config_size, const pl_host_services* host, pl_error* err) noexcept {
  try {
    nlohmann::json config = config_size > 0 ? nlohmann::json::parse(config_json, config_json + config_size)
                                            : nlohmann::json::object();
    if constexpr (std::is_base_of_v<AsyncStage, StageT>) {
      if (!host_runs_async(host)) {
        copy_message(err, "this plugin runs asynchronously and the host has no asynchronous runs (complete/post/poll_item)");
        return nullptr;
      }
      return new Instance{nullptr, std::make_unique<StageT>(config), host};
    } else {
      return new Instance{std::make_unique<StageT>(config), nullptr, host};
    }
  } catch (const std::exception& e) {
    copy_message(err, e.what());
  } catch (...) {
    copy_message(err, "unknown exception in plugin constructor");
  }
  return nullptr;
}

// Records a stage's result or its exception through the host; returns PL_RUN_OK or PL_RUN_ERROR.
inline int report(const pl_host_services* host, pl_run_context* ctx, const Payload* output, std::exception_ptr error) noexcept {
  try {
    if (!error) {
      const EncodedPayload c(*output);
      return host->set_output(ctx, &c.view()) == PL_OK ? PL_RUN_OK : PL_RUN_ERROR;
    }
    std::rethrow_exception(error);
  } catch (const StageError& e) {
    host->set_error(ctx, e.error_class().c_str(), e.what());
  } catch (const nlohmann::json::exception& e) {
    host->set_error(ctx, PL_ERR_INVALID_INPUT, e.what());
  } catch (const std::exception& e) {
    host->set_error(ctx, PL_ERR_INTERNAL, e.what());
  } catch (...) {
    host->set_error(ctx, PL_ERR_INTERNAL, "unknown exception in plugin");
  }
  return PL_RUN_ERROR;
}

// An asynchronous run: the frame owns the input and the context the stage's coroutine refers to.
inline Detached run_async(Instance* self, pl_run_context* ctx, Payload input) {
  Context context(self->host, ctx);
  std::optional<Payload> output;
  std::exception_ptr error;
  try {
    Payload result = co_await self->async_stage->run(input, context);
    output = std::move(result);
  } catch (...) {
    error = std::current_exception();
  }
  const int status = report(self->host, ctx, output ? &*output : nullptr, error);
  self->host->complete(ctx, status);
}

inline int run(void* instance, pl_run_context* ctx, const pl_payload* input) noexcept {
  auto* self = static_cast<Instance*>(instance);
  std::optional<Payload> output;
  std::exception_ptr error;
  try {
    Payload in = decode_payload(*input);
    if (self->async_stage) {
      run_async(self, ctx, std::move(in));  // runs to its first wait, then goes on from host callbacks
      return PL_RUN_PENDING;
    }
    Context context(self->host, ctx);
    output = self->stage->run(in, context);
  } catch (...) {
    error = std::current_exception();
  }
  return report(self->host, ctx, output ? &*output : nullptr, error);
}

inline void destroy(void* instance) noexcept { delete static_cast<Instance*>(instance); }

// The host service groups a plugin of StageT needs (pl_plugin_descriptor.required_services).
template <class StageT>
constexpr std::uint32_t required_services() {
  return std::is_base_of_v<AsyncStage, StageT> ? PL_SERVICES_ASYNC_RUNS : 0u;
}

}  // namespace detail
}  // namespace pipelined::sdk

// Exports the plugin's entry symbol for StageT. Use once per plugin library.
#define PIPELINED_PLUGIN(StageT, NAME, VERSION, STAGE, VARIANT)                                      \
  extern "C" __attribute__((visibility("default"))) const pl_plugin_descriptor* pipelined_plugin_entry( \
      void) {                                                                                        \
    static const pl_plugin_descriptor descriptor = {                                                 \
        PL_ABI_VERSION,                                                                              \
        sizeof(pl_plugin_descriptor),                                                                \
        NAME,                                                                                        \
        VERSION,                                                                                     \
        STAGE,                                                                                       \
        VARIANT,                                                                                     \
        &::pipelined::sdk::detail::create<StageT>,                                                   \
        &::pipelined::sdk::detail::run,                                                              \
        &::pipelined::sdk::detail::destroy,                                                          \
        ::pipelined::sdk::detail::required_services<StageT>()};                                      \
    return &descriptor;                                                                              \
  }
