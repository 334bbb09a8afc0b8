// A host for running stage code without the daemon: pl_host_services over a scripted provider
// function (answers after a delay on its own thread, like the outbound client's I/O thread), an
// input item stream, emitted items, a thread-per-task pool and in-flight counters.
#pragma once

#include <pipelined/sdk.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fake {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Reply {
  int status = 200;
  std::string body;
  std::string error_class;  // transport-level failure ("timeout", ...)
  int delay_ms = 5;
};

struct Call {
  std::string provider, path;
  json body;  // null when the body is not JSON
  Clock::time_point started;
};

using Provider = std::function<Reply(const Call&)>;

// Caps requests in flight per provider across runs, like the outbound client: the excess waits.
class Limiter {
 public:
  explicit Limiter(std::map<std::string, int> max_in_flight) : max_(std::move(max_in_flight)) {}
  void acquire(const std::string& provider) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = max_.find(provider);
    if (it == max_.end()) return;
    cv_.wait(lock, [&] { return in_flight_[provider] < it->second; });
    ++in_flight_[provider];
  }
  void release(const std::string& provider) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!max_.count(provider)) return;
    --in_flight_[provider];
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> max_;
  std::map<std::string, int> in_flight_;
};

}  // namespace fake

struct pl_run_context {
  fake::Provider provider;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<fake::Call> calls;
  std::vector<nlohmann::json> emitted;
  std::vector<fake::Clock::time_point> emitted_at;
  std::deque<nlohmann::json> input;  // items for next_item
  bool input_done = true;
  std::string current_item;           // keeps next_item's JSON alive
  std::atomic<int> in_flight{0}, peak_in_flight{0};
  std::atomic<bool> cancelled{false};
  std::vector<std::thread> threads;
  std::shared_ptr<fake::Limiter> limiter;                   // optional
  std::function<void(const nlohmann::json&)> on_emit;      // optional: hands emitted items on
  std::vector<std::pair<void (*)(void*), void*>> wakers;    // poll_item readers waiting for input

  ~pl_run_context() { join(); }
  // Joins every thread, also those the joined ones started (post from a posted task).
  void join() {
    for (;;) {
      std::vector<std::thread> ts;
      {
        std::lock_guard<std::mutex> lock(mu);
        ts.swap(threads);
      }
      if (ts.empty()) return;
      for (auto& t : ts) t.join();
    }
  }
  void push_item(const nlohmann::json& item) {
    std::unique_lock<std::mutex> lock(mu);
    input.push_back(item);
    cv.notify_all();
    wake(lock);
  }
  void end_items() {
    std::unique_lock<std::mutex> lock(mu);
    input_done = true;
    cv.notify_all();
    wake(lock);
  }
  void wake(std::unique_lock<std::mutex>& lock) {
    auto ws = std::move(wakers);
    wakers.clear();
    lock.unlock();
    for (auto& [fn, user] : ws) fn(user);
  }
};

struct pl_task_group {
  std::vector<std::thread> threads;
};

namespace fake {

// next_item / poll_item once there is something to answer (under c->mu): cancelled, the next
// input item, or the end of the input.
inline int take_item(pl_run_context* c, pl_payload* p) {
  if (c->cancelled.load()) return PL_CANCELLED;
  if (c->input.empty()) return PL_END;
  c->current_item = c->input.front().dump();
  c->input.pop_front();
  *p = {c->current_item.data(), c->current_item.size(), nullptr, 0};
  return PL_OK;
}

inline const pl_host_services* services() {
  static const pl_host_services s = [] {
    pl_host_services h{};
    h.struct_size = sizeof(pl_host_services);
    h.log = [](pl_run_context*, int, const char*) {};
    h.remaining_ms = [](pl_run_context*) -> int64_t { return 60000; };
    h.is_cancelled = [](pl_run_context* c) -> int { return c->cancelled.load() ? 1 : 0; };
    h.set_output = [](pl_run_context*, const pl_payload*) -> int { return PL_OK; };
    h.set_error = [](pl_run_context*, const char*, const char*) {};
    h.emit_item = [](pl_run_context* c, const pl_payload* p) -> int {
      json item = json::parse(p->json, p->json + p->json_size);
      if (c->on_emit) c->on_emit(item);
      std::lock_guard<std::mutex> lock(c->mu);
      c->emitted.push_back(std::move(item));
      c->emitted_at.push_back(Clock::now());
      return PL_OK;
    };
    h.next_item = [](pl_run_context* c, pl_payload* p) -> int {
      std::unique_lock<std::mutex> lock(c->mu);
      c->cv.wait(lock, [&] { return !c->input.empty() || c->input_done || c->cancelled.load(); });
      return take_item(c, p);
    };
    h.poll_item = [](pl_run_context* c, pl_payload* p, void (*wake)(void*), void* user) -> int {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->input.empty() && !c->input_done && !c->cancelled.load()) {
        c->wakers.emplace_back(wake, user);
        return PL_PENDING;
      }
      return take_item(c, p);
    };
    h.post = [](pl_run_context* c, void (*fn)(void*), void* arg) -> int {
      std::lock_guard<std::mutex> lock(c->mu);
      c->threads.emplace_back([fn, arg] { fn(arg); });
      return PL_OK;
    };
    h.complete = [](pl_run_context*, int) {};  // stage functions are awaited directly (fake::wait)
    h.group_create = [](pl_run_context*) -> pl_task_group* { return new pl_task_group; };
    h.group_submit = [](pl_task_group* g, void (*fn)(void*), void* arg) -> int {
      g->threads.emplace_back([fn, arg] { fn(arg); });
      return PL_OK;
    };
    h.group_wait = [](pl_task_group* g) {
      for (auto& t : g->threads) t.join();
      g->threads.clear();
    };
    h.group_destroy = [](pl_task_group* g) {
      for (auto& t : g->threads) t.join();
      delete g;
    };
    h.http_send = [](pl_run_context* c, const pl_http_request* r, pl_http_callback cb, void* user) -> int {
      Call call{r->provider ? r->provider : "", r->path, json::parse(r->body, r->body + r->body_size, nullptr, false), Clock::now()};
      if (call.body.is_discarded()) call.body = nullptr;
      Reply reply = c->provider(call);
      {
        std::lock_guard<std::mutex> lock(c->mu);
        c->calls.push_back(call);
        c->threads.emplace_back([c, cb, user, reply, provider = call.provider] {
          if (c->limiter) c->limiter->acquire(provider);
          int now = ++c->in_flight;
          int peak = c->peak_in_flight.load();
          while (now > peak && !c->peak_in_flight.compare_exchange_weak(peak, now)) {
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
          --c->in_flight;
          if (c->limiter) c->limiter->release(provider);
          pl_http_response out{reply.status, reply.body.data(), reply.body.size(),
                               reply.error_class.empty() ? nullptr : reply.error_class.c_str(),
                               reply.error_class.empty() ? nullptr : "fake transport failure", 1};
          cb(user, &out);
        });
      }
      return PL_OK;
    };
    return h;
  }();
  return &s;
}

// A stage run: the context plus the SDK wrapper over it.
struct Run {
  pl_run_context raw;
  pipelined::sdk::Context ctx{services(), &raw};
  explicit Run(Provider p) { raw.provider = std::move(p); }
};

// Runs a stage coroutine to its end on the fake host's threads and returns its result.
template <class T>
T wait(pipelined::sdk::Task<T> task) {
  // The error crosses to the waiting thread as plain data and is thrown there: an exception_ptr
  // shared between the threads is freed by whichever lets go last, and ThreadSanitizer cannot see
  // the (uninstrumented) libstdc++ reference count that orders that free after the other's reads.
  struct Outcome {
    std::optional<T> value;
    bool stage_error = false;
    std::string error_class, message;
  };
  std::promise<Outcome> promise;
  auto future = promise.get_future();
  pipelined::sdk::detail::start(std::move(task), [&promise](std::optional<T> value, std::exception_ptr error) {
    Outcome out;
    if (!error) {
      out.value = std::move(value);
    } else {
      try {
        std::rethrow_exception(error);
      } catch (const pipelined::sdk::StageError& e) {
        out.stage_error = true;
        out.error_class = e.error_class();
        out.message = e.what();
      } catch (const std::exception& e) {
        out.message = e.what();
      }
    }
    promise.set_value(std::move(out));
  });
  Outcome out = future.get();
  if (out.value) return std::move(*out.value);
  if (out.stage_error) throw pipelined::sdk::StageError(out.error_class, out.message);
  throw std::runtime_error(out.message);
}

inline std::string chat_reply(const json& content) {
  return json{{"id", "chatcmpl-fake"},
              {"object", "chat.completion"},
              {"choices", json::array({{{"index", 0},
                                        {"message", {{"role", "assistant"}, {"content", content.dump()}}},
                                        {"finish_reason", "stop"}}})}}
      .dump();
}

}  // namespace fake
