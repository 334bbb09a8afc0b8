// The runner process's side of isolation (runner.h): the host services an isolated plugin gets,
// and the loop that reads the daemon's frames.
#include "daemon/isolation/runner.h"

#include "daemon/isolation/wire.h"
#include "daemon/memory/memory_account.h"
#include "daemon/plugin_host/descriptor_check.h"
#include "daemon/pool/worker_pool.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <boost/dll/shared_library.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pipelined::isolation {

namespace {

using Clock = std::chrono::steady_clock;

// A payload the plugin handed over (set_output), copied, to be sent with Done.
struct OwnedPayload {
  std::string json;
  std::vector<std::string> strings;  // name, content type, data per attachment
  std::vector<pl_attachment> attachments;
  pl_payload view{};

  explicit OwnedPayload(const pl_payload& p) : json(p.json ? std::string(p.json, p.json_size) : std::string()) {
    strings.reserve(3 * p.attachment_count);  // c_str() pointers must not move
    for (std::size_t i = 0; i < p.attachment_count; ++i) {
      const pl_attachment& a = p.attachments[i];
      strings.emplace_back(a.name ? a.name : "");
      strings.emplace_back(a.content_type ? a.content_type : "");
      strings.emplace_back(reinterpret_cast<const char*>(a.data), a.data ? a.size : 0);
      attachments.push_back(
          {strings[3 * i].c_str(), strings[3 * i + 1].c_str(), reinterpret_cast<const std::uint8_t*>(strings[3 * i + 2].data()), a.size});
    }
    view = {json.data(), json.size(), attachments.data(), attachments.size()};
  }
};

struct Runner;

// One run of the plugin in this process; the plugin sees it as its pl_run_context.
struct Run {
  Runner* runner = nullptr;
  std::uint64_t id = 0;
  std::int64_t deadline_ns = 0;  // steady clock, shared with the daemon (CLOCK_MONOTONIC)
  Frame input_frame;             // the input payload's bytes, until run() returns
  WirePayload input;
  std::shared_ptr<memory::MemoryAccount> account = std::make_shared<memory::MemoryAccount>();

  std::mutex mu;
  std::condition_variable changed;
  bool cancelled = false;   // the daemon sent Cancel
  std::deque<Frame> items;  // input stream items not read yet
  bool items_ended = false;
  std::optional<Frame> current_item_frame;  // the item last handed out, valid until the next read
  WirePayload current_item;
  void (*wake)(void*) = nullptr;  // a pending poll_item
  void* wake_user = nullptr;
  bool run_returned = false, completed = false;
  int completed_status = PL_RUN_ERROR;
  std::optional<OwnedPayload> output;
  std::string error_class, error_message;
};

Run* of(pl_run_context* ctx) { return reinterpret_cast<Run*>(ctx); }
pl_run_context* ctx_of(Run* run) { return reinterpret_cast<pl_run_context*>(run); }

struct PendingHttp {
  pl_http_callback callback;
  void* user;
};

struct Runner {
  int fd = -1;
  std::mutex write_mu;
  std::unique_ptr<pool::WorkerPool> pool;
  bool http_available = false;
  const pl_plugin_descriptor* descriptor = nullptr;
  void* instance = nullptr;

  std::mutex mu;
  std::map<std::uint64_t, std::shared_ptr<Run>> runs;
  std::map<std::uint64_t, PendingHttp> http;
  std::uint64_t next_http = 1;

  bool send(FrameWriter& frame) { return frame.send(fd, write_mu); }

  // Ends a run: its result to the daemon, then forgets it.
  void finish(Run* run, int status) {
    FrameWriter done(FrameType::Done, run->id);
    done.u32(static_cast<std::uint32_t>(status));
    if (status == PL_RUN_OK && run->output) {
      done.u32(1).payload(run->output->view);
    } else {
      done.u32(0).str(run->error_class.empty() ? PL_ERR_INTERNAL : run->error_class);
      done.str(status == PL_RUN_OK && !run->output ? "the plugin returned OK without calling set_output" : run->error_message);
    }
    done.i64(run->account->peak_bytes());
    send(done);
    std::lock_guard lock(mu);
    runs.erase(run->id);
  }
};

Runner* g_runner = nullptr;  // the one runner of this process; host services have no other way to it

std::int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

bool run_cancelled(Run* run) {
  std::lock_guard lock(run->mu);
  return run->cancelled || now_ns() >= run->deadline_ns;
}

void svc_log(pl_run_context* ctx, int level, const char* message) {
  FrameWriter f(FrameType::Log, ctx ? of(ctx)->id : 0);
  f.u32(static_cast<std::uint32_t>(level)).str(message ? message : "");
  g_runner->send(f);
}

std::int64_t svc_remaining_ms(pl_run_context* ctx) { return (of(ctx)->deadline_ns - now_ns()) / 1000000; }

int svc_is_cancelled(pl_run_context* ctx) { return run_cancelled(of(ctx)) ? 1 : 0; }

bool valid_json(const pl_payload* p) { return p->json != nullptr && nlohmann::json::accept(p->json, p->json + p->json_size); }

int svc_set_output(pl_run_context* ctx, const pl_payload* output) {
  Run* run = of(ctx);
  if (!valid_json(output)) {
    run->error_class = PL_ERR_INTERNAL;
    run->error_message = "stage output is not valid JSON";
    return PL_ERROR;
  }
  run->output.emplace(*output);
  return PL_OK;
}

void svc_set_error(pl_run_context* ctx, const char* error_class, const char* message) {
  of(ctx)->error_class = error_class ? error_class : PL_ERR_INTERNAL;
  of(ctx)->error_message = message ? message : "";
}

int svc_emit_item(pl_run_context* ctx, const pl_payload* item) {
  Run* run = of(ctx);
  if (run_cancelled(run)) return PL_CANCELLED;
  if (!valid_json(item)) return PL_ERROR;
  FrameWriter f(FrameType::ItemOut, run->id);
  f.payload(*item);
  return g_runner->send(f) ? PL_OK : PL_CANCELLED;
}

// The next input item, the end, the cancellation, or PL_ITEM_PENDING. Under run->mu.
int read_item(Run* run, pl_payload* item) {
  if (!run->items.empty()) {
    run->current_item_frame = std::move(run->items.front());
    run->items.pop_front();
    FrameReader r(*run->current_item_frame);
    r.payload(run->current_item);
    *item = run->current_item.view;
    return PL_ITEM_OK;
  }
  if (run->items_ended) return PL_ITEM_END;
  if (run->cancelled || now_ns() >= run->deadline_ns) return PL_ITEM_CANCELLED;
  return PL_ITEM_PENDING;
}

int svc_next_item(pl_run_context* ctx, pl_payload* item) {
  Run* run = of(ctx);
  std::unique_lock lock(run->mu);
  for (;;) {
    const int rc = read_item(run, item);
    if (rc != PL_ITEM_PENDING) return rc;
    // Wakes on every item; the timeout bounds how late a passed deadline is noticed.
    run->changed.wait_for(lock, std::chrono::milliseconds(20));
  }
}

int svc_poll_item(pl_run_context* ctx, pl_payload* item, void (*wake)(void*), void* user) {
  Run* run = of(ctx);
  std::lock_guard lock(run->mu);
  const int rc = read_item(run, item);
  if (rc == PL_ITEM_PENDING) run->wake = wake, run->wake_user = user;
  return rc;
}

// The stream of `run` changed (an item, its end, a cancellation): wakes its reader.
void stream_changed(Run* run) {
  void (*wake)(void*) = nullptr;
  void* user = nullptr;
  {
    std::lock_guard lock(run->mu);
    std::swap(wake, run->wake);
    user = run->wake_user;
  }
  run->changed.notify_all();
  if (wake) wake(user);
}

struct pl_task_group_impl {
  explicit pl_task_group_impl(pool::WorkerPool& p) : group(p) {}
  pool::TaskGroup group;
};

pl_task_group* svc_group_create(pl_run_context*) { return reinterpret_cast<pl_task_group*>(new pl_task_group_impl(*g_runner->pool)); }
int svc_group_submit(pl_task_group* g, void (*fn)(void*), void* arg) {
  reinterpret_cast<pl_task_group_impl*>(g)->group.submit([fn, arg] { fn(arg); });
  return PL_OK;
}
void svc_group_wait(pl_task_group* g) { reinterpret_cast<pl_task_group_impl*>(g)->group.wait(); }
void svc_group_destroy(pl_task_group* g) { delete reinterpret_cast<pl_task_group_impl*>(g); }

int svc_http_send(pl_run_context* ctx, const pl_http_request* request, pl_http_callback callback, void* user) {
  Runner& r = *g_runner;
  if (!r.http_available) return PL_ERROR;
  std::uint64_t id;
  {
    std::lock_guard lock(r.mu);
    id = r.next_http++;
    r.http[id] = {callback, user};
  }
  FrameWriter f(FrameType::Http, id);
  f.u64(of(ctx)->id).str(request->provider ? request->provider : "").str(request->method ? request->method : "POST");
  f.str(request->path ? request->path : "").u32(static_cast<std::uint32_t>(request->header_count));
  for (std::size_t i = 0; i < request->header_count; ++i)
    f.str(request->headers[i].name ? request->headers[i].name : "").str(request->headers[i].value ? request->headers[i].value : "");
  f.bytes_ref(request->body, request->body ? request->body_size : 0).i64(request->timeout_ms);
  if (!r.send(f)) {  // the daemon is gone; this process ends with it
    std::lock_guard lock(r.mu);
    r.http.erase(id);
    return PL_ERROR;
  }
  return PL_OK;
}

void svc_complete(pl_run_context* ctx, int status) {
  Run* run = of(ctx);
  {
    std::lock_guard lock(run->mu);
    run->completed = true;
    run->completed_status = status;
    if (!run->run_returned) return;  // complete() inside run(): the run's task finishes it
  }
  g_runner->finish(run, status);
}

int svc_post(pl_run_context* ctx, void (*fn)(void*), void* arg) {
  // The task often completes the run, which frees the Run and with it the account the pool would
  // carry as a plain pointer: the task holds the account itself, so what fn frees after complete()
  // is still released from a live account.
  std::shared_ptr<memory::MemoryAccount> account = of(ctx)->account;
  memory::ScopedAccount none(nullptr);  // the pool carries no account into this task
  g_runner->pool->submit([fn, arg, account = std::move(account)] {
    memory::ScopedAccount scope(account.get());
    fn(arg);
  });
  return PL_OK;
}

const pl_host_services kServices = {sizeof(pl_host_services),
                                    svc_log,
                                    svc_remaining_ms,
                                    svc_is_cancelled,
                                    svc_set_output,
                                    svc_set_error,
                                    svc_emit_item,
                                    svc_next_item,
                                    svc_group_create,
                                    svc_group_submit,
                                    svc_group_wait,
                                    svc_group_destroy,
                                    svc_http_send,
                                    svc_complete,
                                    svc_post,
                                    svc_poll_item};

int fail(Runner& r, const std::string& reason) {
  FrameWriter f(FrameType::Failed, 0);
  f.str(reason);
  r.send(f);
  return 1;
}

void start_run(Runner& r, Frame frame) {
  auto run = std::make_shared<Run>();
  run->runner = &r;
  run->id = frame.id;
  run->input_frame = std::move(frame);
  FrameReader in(run->input_frame);
  run->deadline_ns = in.i64();
  in.payload(run->input);
  {
    std::lock_guard lock(r.mu);
    r.runs[run->id] = run;
  }
  if (in.failed()) {
    run->error_class = PL_ERR_INTERNAL;
    run->error_message = "runner: malformed Run frame";
    r.finish(run.get(), PL_RUN_ERROR);
    return;
  }
  memory::ScopedAccount scope(run->account.get());
  r.pool->submit([&r, run] {  // `run` keeps the input alive until run() has returned
    const int status = r.descriptor->run(r.instance, ctx_of(run.get()), &run->input.view);
    int final_status = status;
    {
      std::lock_guard lock(run->mu);
      run->run_returned = true;
      if (status == PL_RUN_PENDING) {
        if (!run->completed) return;  // complete() finishes it later
        final_status = run->completed_status;
      }
    }
    r.finish(run.get(), final_status);
  });
}

std::shared_ptr<Run> find_run(Runner& r, std::uint64_t id) {
  std::lock_guard lock(r.mu);
  auto it = r.runs.find(id);
  return it == r.runs.end() ? nullptr : it->second;
}

void answer_http(Runner& r, const Frame& frame) {
  PendingHttp pending{};
  {
    std::lock_guard lock(r.mu);
    auto it = r.http.find(frame.id);
    if (it == r.http.end()) return;
    pending = it->second;
    r.http.erase(it);
  }
  FrameReader in(frame);
  const int status = static_cast<int>(in.u32());
  const std::string_view body = in.bytes();
  const std::string error_class = in.str(), error = in.str();
  const int attempts = static_cast<int>(in.u32());
  pl_http_response response{
      status,  body.data(), body.size(), error_class.empty() ? nullptr : error_class.c_str(), error.empty() ? nullptr : error.c_str(),
      attempts};
  if (in.failed()) response = {0, nullptr, 0, PL_ERR_INTERNAL, "runner: malformed HttpAnswer frame", 0};
  pending.callback(pending.user, &response);  // on this reader thread, as the daemon runs it on its I/O thread
}

}  // namespace

int serve_runner(int fd) {
  Runner r;
  r.fd = fd;
  g_runner = &r;
  auto create = read_frame(fd);
  if (!create || create->type != FrameType::Create) return fail(r, "runner: expected a Create frame");
  FrameReader in(*create);
  const std::string plugin_file = in.str(), config_json = in.str();
  r.http_available = in.u32() != 0;
  const std::uint32_t threads = in.u32();
  if (in.failed()) return fail(r, "runner: malformed Create frame");
  r.pool = std::make_unique<pool::WorkerPool>(threads == 0 ? 4 : threads);

  boost::dll::shared_library library;
  std::error_code ec;
  library.load(plugin_file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) return fail(r, "cannot load: " + ec.message());
  if (!library.has(PL_ENTRY_SYMBOL)) return fail(r, "missing entry symbol " PL_ENTRY_SYMBOL);
  r.descriptor = library.get<const pl_plugin_descriptor*()>(PL_ENTRY_SYMBOL)();
  if (auto bad = plugin_host::check_descriptor(r.descriptor, &kServices)) return fail(r, *bad);
  pl_error err{};
  memory::MemoryAccount instance_account;  // what create() keeps: the instance's own memory
  {
    memory::ScopedAccount scope(&instance_account);
    r.instance = r.descriptor->create(config_json.data(), config_json.size(), &kServices, &err);
  }
  if (r.instance == nullptr) return fail(r, "create() failed: " + std::string(err.message[0] ? err.message : "no reason given"));
  {
    FrameWriter ready(FrameType::Ready, 0);
    ready.str(r.descriptor->name).str(r.descriptor->version).str(r.descriptor->stage).str(r.descriptor->variant);
    ready.i64(instance_account.current.load());
    if (!r.send(ready)) _exit(0);
  }

  // Shutdown normally comes when no run is left (the daemon destroys an instance after its last
  // run); should one still be in flight, its frames keep being served until it ends.
  bool shutting_down = false;
  while (auto frame = read_frame(fd)) {
    switch (frame->type) {
      case FrameType::Run:
        start_run(r, std::move(*frame));
        break;
      case FrameType::ItemIn:
      case FrameType::ItemEnd:
      case FrameType::Cancel:
        if (auto run = find_run(r, frame->id)) {
          {
            std::lock_guard lock(run->mu);
            if (frame->type == FrameType::ItemIn)
              run->items.push_back(std::move(*frame));
            else if (frame->type == FrameType::ItemEnd)
              run->items_ended = true;
            else
              run->cancelled = true;
          }
          stream_changed(run.get());
        }
        break;
      case FrameType::HttpAnswer:
        answer_http(r, *frame);
        break;
      case FrameType::Shutdown:
        shutting_down = true;
        break;
      default:
        std::fprintf(stderr, "pipelined-runner: unexpected frame type %d\n", static_cast<int>(frame->type));
        break;
    }
    if (shutting_down) {
      std::unique_lock lock(r.mu);
      if (!r.runs.empty()) continue;
      lock.unlock();
      r.pool.reset();  // posted work ends before the instance goes
      r.descriptor->destroy(r.instance);
      return 0;
    }
  }
  // The daemon went away: nothing here is wanted any more, and runs may be in flight, so the
  // instance is not destroyed.
  _exit(0);
}

}  // namespace pipelined::isolation
