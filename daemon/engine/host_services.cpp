// The C-ABI host services (pl_host_services in plugin_abi.h) the engine gives every plugin: logging,
// deadline and cancellation, results, item streams, task groups on the worker pool, outbound HTTP,
// and the completion of asynchronous runs. Each acts on the pl_run_context of one attempt.
#include "daemon/engine/engine_impl.h"
#include "daemon/engine/run_context.h"
#include "daemon/outbound/outbound.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <mutex>
#include <string>
#include <utility>

namespace pipelined::engine {

namespace {

void log(pl_run_context* ctx, int level, const char* message) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info, spdlog::level::warn,
                                                         spdlog::level::err};
  const auto lvl = kLevels[level < 0 ? 0 : level > 3 ? 3 : level];
  if (ctx == nullptr) {
    spdlog::log(lvl, "plugin: {}", message);
  } else {
    spdlog::log(lvl, "[{}] {}/{}: {}", ctx->request->request.request_id, ctx->request->pipeline->name,
                ctx->stage->config->name, message);
  }
}

std::int64_t remaining_ms(pl_run_context* ctx) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(ctx->deadline - Clock::now()).count();
}

int is_cancelled(pl_run_context* ctx) { return cancelled(ctx) ? 1 : 0; }

int set_output(pl_run_context* ctx, const pl_payload* output) {
  try {
    ctx->output = sdk::decode_payload(*output);
    return PL_OK;
  } catch (const std::exception& e) {
    ctx->error_class = PL_ERR_INTERNAL;
    ctx->error_message = std::string("stage output is not valid JSON: ") + e.what();
    return PL_ERROR;
  }
}

void set_error(pl_run_context* ctx, const char* error_class, const char* message) {
  ctx->error_class = error_class ? error_class : PL_ERR_INTERNAL;
  ctx->error_message = message ? message : "";
}

int emit_item(pl_run_context* ctx, const pl_payload* item) {
  // An abandoned run's stage has ended (and may be rerunning on stable): its items go nowhere.
  if (ctx->phase.load() == pl_run_context::Abandoned) return PL_CANCELLED;
  try {
    Payload p = sdk::decode_payload(*item);
    ctx->emitted.push_back(p);
    const auto& observer = ctx->request->request.observer;
    if (!observer) {
      ctx->stage->emitted->push(std::move(p));
      return PL_OK;
    }
    const nlohmann::json observed = p.json;
    // Told after the stream's lock is let go, and only for an item the stream took.
    if (ctx->stage->emitted->push(std::move(p))) observer({RunEvent::Kind::Item, ctx->stage->config->name, nullptr, &observed});
    return PL_OK;
  } catch (const std::exception& e) {
    spdlog::warn("[{}] {}: emitted item is not valid JSON: {}", ctx->request->request.request_id,
                 ctx->stage->config->name, e.what());
    return PL_ERROR;
  }
}

// The reader's next item, the end, its cancellation, or PL_ITEM_PENDING: nothing yet. Under stream.mu.
int read_item(pl_run_context* ctx, ItemStream& stream, pl_payload* item) {
  if (ctx->read_cursor < stream.items.size()) {
    const Payload& next = stream.items[ctx->read_cursor++];
    ctx->current_item.emplace(next);
    *item = ctx->current_item->view();
    return PL_ITEM_OK;
  }
  if (stream.ended) return PL_ITEM_END;
  if (cancelled(ctx)) return PL_ITEM_CANCELLED;
  return PL_ITEM_PENDING;
}

int next_item(pl_run_context* ctx, pl_payload* item) {
  StageRun* source = ctx->stage->stream_source;
  if (source == nullptr) return PL_ITEM_END;
  ItemStream& stream = *source->emitted;
  std::unique_lock lock(stream.mu);
  for (;;) {
    const int rc = read_item(ctx, stream, item);
    if (rc != PL_ITEM_PENDING) return rc;
    // Wakes on every item; the timeout only bounds how late a cancellation is noticed.
    stream.changed.wait_for(lock, std::chrono::milliseconds(20));
  }
}

pl_task_group* group_create(pl_run_context* ctx) { return new pl_task_group(*ctx->request->pool); }

int group_submit(pl_task_group* group, void (*fn)(void*), void* arg) {
  group->group.submit([fn, arg] { fn(arg); });
  return PL_OK;
}

void group_wait(pl_task_group* group) { group->group.wait(); }
void group_destroy(pl_task_group* group) { delete group; }

int poll_item(pl_run_context* ctx, pl_payload* item, void (*wake)(void*), void* user) {
  StageRun* source = ctx->stage->stream_source;
  if (source == nullptr) return PL_ITEM_END;
  ItemStream& stream = *source->emitted;
  std::lock_guard lock(stream.mu);
  // An abandonment sets the phase before it wakes this reader under stream.mu, so a reader sees
  // either the phase here or the wake.
  const int rc = read_item(ctx, stream, item);
  if (rc == PL_ITEM_PENDING) stream.waiters.push_back({ctx, wake, user, ctx->request->plugins});
  return rc;
}

void complete(pl_run_context* ctx, int status) {
  {
    std::lock_guard lock(ctx->mu);
    ctx->completed = true;
    ctx->completed_status = status;
    if (!ctx->run_returned) return;  // complete() inside run(): start_attempt finishes it
  }
  Scheduler* scheduler = ctx->request->scheduler;
  int expected = pl_run_context::Running;
  if (ctx->phase.compare_exchange_strong(expected, pl_run_context::Completed)) {
    // The stage's next steps (a fallback rerun, dependants, the reply) do not belong on the
    // plugin's thread, which may be the outbound I/O thread.
    scheduler->submit(nullptr, [scheduler, ctx, status] { scheduler->finish_attempt(ctx, status); });
  } else {
    scheduler->release(ctx);  // abandoned: the engine went on without this run
  }
}

int post(pl_run_context* ctx, void (*fn)(void*), void* arg) {
  // The plugin's code runs in fn: its library (held by the request) stays loaded until fn returns,
  // and so does the request's account, which the run's account charges too.
  ctx->request->scheduler->submit(nullptr, [fn, arg, account = ctx->account, request = ctx->request] {
    memory::ScopedAccount scope(account.get());
    fn(arg);
  });
  return PL_OK;
}

int http_send(pl_run_context* ctx, const pl_http_request* request, pl_http_callback callback, void* user) {
  outbound::OutboundClient* client = ctx->request->outbound;
  if (client == nullptr) return PL_ERROR;
  outbound::Request r;
  r.provider = request->provider ? request->provider : "";
  r.method = request->method ? request->method : "POST";
  r.path = request->path ? request->path : "";
  for (std::size_t i = 0; i < request->header_count; ++i)
    r.headers.emplace_back(request->headers[i].name, request->headers[i].value);
  if (request->body) r.body.assign(request->body, request->body_size);
  r.timeout = std::chrono::milliseconds(request->timeout_ms);
  r.deadline = ctx->deadline;
  // Isolated variants' calls come here too (the supervisor forwards them with the engine's ctx), so
  // every call of a user request waits by that request's age.
  r.request_arrived = ctx->request->request.arrived;
  // The callback is the plugin's code: its library stays loaded until the callback returns.
  client->send(std::move(r), [callback, user, plugins = ctx->request->plugins](outbound::Response response) {
    pl_http_response c{response.status,
                       response.body.data(),
                       response.body.size(),
                       response.error_class.empty() ? nullptr : response.error_class.c_str(),
                       response.error.empty() ? nullptr : response.error.c_str(),
                       response.attempts};
    callback(user, &c);
  });
  return PL_OK;
}

}  // namespace

pl_host_services make_host_services() {
  return {sizeof(pl_host_services), log,       remaining_ms,  is_cancelled, set_output,
          set_error,                emit_item, next_item,     group_create, group_submit,
          group_wait,               group_destroy, http_send, complete, post, poll_item};
}

}  // namespace pipelined::engine
