#include "daemon/engine/engine.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "daemon/memory/memory_account.h"
#include "daemon/outbound/outbound.h"

namespace pipelined::engine {

const char* to_string(StageStatus status) {
  switch (status) {
    case StageStatus::Ok: return "ok";
    case StageStatus::Failed: return "failed";
    case StageStatus::Skipped: return "skipped";
    case StageStatus::FellBack: return "fell_back";
  }
  return "unknown";
}

namespace {

Payload to_payload(const pl_payload& p) { return sdk::detail::from_c(p); }

// Items a stage emitted, read by the stage that consumes it as a stream. Items are kept so a
// fallback rerun of the consumer can read them again from the start.
struct ItemStream {
  // An asynchronous reader (poll_item) waiting for the stream to change.
  struct Waiter {
    const pl_run_context* reader;
    void (*wake)(void*);
    void* user;
    std::shared_ptr<const plugin_host::PluginSet> plugins;  // wake is the plugin's code
  };

  std::mutex mu;
  std::condition_variable changed;
  std::deque<Payload> items;   // deque: references stay valid as items are appended
  std::set<std::string> seen;  // JSON text of every item, to drop a fallback rerun's repeats
  bool ended = false;
  std::vector<Waiter> waiters;

  void push(Payload item) {
    std::vector<Waiter> woken;
    {
      std::lock_guard lock(mu);
      if (!seen.insert(item.json.dump()).second) return;
      items.push_back(std::move(item));
      woken.swap(waiters);
    }
    changed.notify_all();
    for (const auto& w : woken) w.wake(w.user);
  }
  void end() {
    std::vector<Waiter> woken;
    {
      std::lock_guard lock(mu);
      ended = true;
      woken.swap(waiters);
    }
    changed.notify_all();
    for (const auto& w : woken) w.wake(w.user);
  }
  // Wakes `reader` if it waits (its run was abandoned: it should see the cancellation).
  void wake_reader(const pl_run_context* reader) {
    std::vector<Waiter> woken;
    {
      std::lock_guard lock(mu);
      for (auto it = waiters.begin(); it != waiters.end();) {
        if (it->reader == reader) {
          woken.push_back(*it);
          it = waiters.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& w : woken) w.wake(w.user);
  }
};

enum class State { Waiting, Running, Done, Failed, Skipped };

struct StageRun;

struct StageRun {
  const config::StageConfig* config = nullptr;
  std::string variant;  // requested
  State state = State::Waiting;
  int blockers = 0;                      // dependencies not yet satisfied
  std::vector<StageRun*> unblock_on_end;    // stages waiting for this one to end
  std::vector<StageRun*> unblock_on_start;  // stream consumers, which start with this one
  std::vector<StageRun*> needed_by;         // stages that read this one's output
  StageRun* stream_source = nullptr;
  std::shared_ptr<ItemStream> emitted = std::make_shared<ItemStream>();
  Payload input;  // kept for a fallback rerun
  Payload output;
  StageRecord record;
  std::string first_error_class, first_error_message;  // of a failed first attempt
  std::int64_t peak = 0;
};

}  // namespace

struct RequestRun;
}  // namespace pipelined::engine

// One attempt of one stage of one request: what the host services act on. Heap-allocated: a run
// that returned PL_PENDING keeps it until complete(), possibly after the engine stopped waiting.
struct pl_run_context {
  enum Phase { Running, Completed /* the plugin ended the run */, Abandoned /* the engine stopped waiting */ };

  std::shared_ptr<pipelined::engine::RequestRun> request;  // kept alive (plugins, stages) while the plugin holds ctx
  pipelined::engine::StageRun* stage = nullptr;
  pipelined::engine::Clock::time_point deadline;  // min(request deadline, stage timeout)
  bool stage_timeout_limits = false;               // deadline comes from the stage's timeout
  // Shared with the tasks post() runs under it, so it outlives the last of them.
  std::shared_ptr<pipelined::memory::MemoryAccount> account = std::make_shared<pipelined::memory::MemoryAccount>();
  std::atomic<int> phase{Running};
  // Holders: the plugin until complete(), plus the engine's abandon() while it is queued or runs.
  // The last release() frees the context.
  std::atomic<int> holders{1};
  std::mutex mu;              // orders complete() against run() returning PL_PENDING
  bool run_returned = false;  // guarded by mu
  bool completed = false;     // guarded by mu: complete() was called ...
  int completed_status = PL_ERROR;  // ... with this status
  std::optional<pipelined::engine::Payload> output;
  std::string error_class, error_message;
  std::vector<pipelined::engine::Payload> emitted;  // in order, for {"items": [...]}
  std::size_t read_cursor = 0;
  std::optional<pipelined::sdk::detail::CPayload> current_item;  // valid until the next next_item
};

struct pl_task_group {
  explicit pl_task_group(pipelined::pool::WorkerPool& pool) : group(pool) {}
  pipelined::pool::TaskGroup group;
};

namespace pipelined::engine {

struct RequestRun {
  Engine::Impl* engine = nullptr;
  pool::WorkerPool* pool = nullptr;
  outbound::OutboundClient* outbound = nullptr;
  std::shared_ptr<const plugin_host::PluginSet> plugins;
  const config::PipelineConfig* pipeline = nullptr;
  RunRequest request;
  std::function<void(RunResult)> done;
  Clock::time_point started = Clock::now();
  memory::MemoryAccount account;

  std::mutex mu;
  std::vector<StageRun> stages;  // pipeline order; never resized after start
  int running = 0;
  bool finished = false;
  RunResult result;
};

struct Engine::Impl {
  pool::WorkerPool& pool;
  outbound::OutboundClient* outbound;
  pl_host_services services{};

  // Runs that returned PL_PENDING, watched for their deadline and their request's cancellation:
  // past either, the engine stops waiting (abandons the run) and goes on without its output.
  std::mutex pending_mu;
  std::condition_variable pending_cv;
  std::set<pl_run_context*> pending;
  bool stopping = false;
  std::thread watchdog;

  // Contexts not yet released: an abandoned run holds its context until it calls complete().
  std::mutex live_mu;
  std::condition_variable live_cv;
  int live_contexts = 0;

  Impl(pool::WorkerPool& p, outbound::OutboundClient* o) : pool(p), outbound(o) {}

  void start(const std::shared_ptr<RequestRun>& run);
  void start_ready(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  void launch(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  void execute(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  void start_attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant);
  void finish_attempt(pl_run_context* ctx, int rc);
  void abandon(pl_run_context* ctx);
  void attempt_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok);
  void release(pl_run_context* ctx);
  void watch_pending();
  void stage_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok);
  void skip_dependants(RequestRun& run, StageRun& stage);
  void maybe_finish(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  Payload input_of(RequestRun& run, const StageRun& stage);

  // Queues fn on the pool under `account` (null: none), not under the submitting thread's.
  void submit(memory::MemoryAccount* account, std::function<void()> fn) {
    memory::ScopedAccount none(nullptr);
    pool.submit([account, fn = std::move(fn)] {
      memory::ScopedAccount scope(account);
      fn();
    });
  }
};

namespace {

bool cancelled(pl_run_context* ctx) {
  return ctx->request->request.cancelled->load(std::memory_order_relaxed) || Clock::now() >= ctx->deadline ||
         ctx->phase.load() == pl_run_context::Abandoned;
}

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
    ctx->output = to_payload(*output);
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
    Payload p = to_payload(*item);
    ctx->emitted.push_back(p);
    ctx->stage->emitted->push(std::move(p));
    return PL_OK;
  } catch (const std::exception& e) {
    spdlog::warn("[{}] {}: emitted item is not valid JSON: {}", ctx->request->request.request_id,
                 ctx->stage->config->name, e.what());
    return PL_ERROR;
  }
}

// The reader's next item, the end, its cancellation, or PL_PENDING: nothing yet. Under stream.mu.
int read_item(pl_run_context* ctx, ItemStream& stream, pl_payload* item) {
  if (ctx->read_cursor < stream.items.size()) {
    const Payload& next = stream.items[ctx->read_cursor++];
    ctx->current_item.emplace(next);
    *item = ctx->current_item->view;
    return PL_OK;
  }
  if (stream.ended) return PL_END;
  if (cancelled(ctx)) return PL_CANCELLED;
  return PL_PENDING;
}

int next_item(pl_run_context* ctx, pl_payload* item) {
  StageRun* source = ctx->stage->stream_source;
  if (source == nullptr) return PL_END;
  ItemStream& stream = *source->emitted;
  std::unique_lock lock(stream.mu);
  for (;;) {
    const int rc = read_item(ctx, stream, item);
    if (rc != PL_PENDING) return rc;
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
  if (source == nullptr) return PL_END;
  ItemStream& stream = *source->emitted;
  std::lock_guard lock(stream.mu);
  // An abandonment sets the phase before it wakes this reader under stream.mu, so a reader sees
  // either the phase here or the wake.
  const int rc = read_item(ctx, stream, item);
  if (rc == PL_PENDING) stream.waiters.push_back({ctx, wake, user, ctx->request->plugins});
  return rc;
}

void complete(pl_run_context* ctx, int status) {
  {
    std::lock_guard lock(ctx->mu);
    ctx->completed = true;
    ctx->completed_status = status;
    if (!ctx->run_returned) return;  // complete() inside run(): start_attempt finishes it
  }
  Engine::Impl* engine = ctx->request->engine;
  int expected = pl_run_context::Running;
  if (ctx->phase.compare_exchange_strong(expected, pl_run_context::Completed)) {
    // The stage's next steps (a fallback rerun, dependants, the reply) do not belong on the
    // plugin's thread, which may be the outbound I/O thread.
    engine->submit(nullptr, [engine, ctx, status] { engine->finish_attempt(ctx, status); });
  } else {
    engine->release(ctx);  // abandoned: the engine went on without this run
  }
}

int post(pl_run_context* ctx, void (*fn)(void*), void* arg) {
  // The plugin's code runs in fn: its library (held by the request) stays loaded until fn returns,
  // and so does the request's account, which the run's account charges too.
  ctx->request->engine->submit(nullptr, [fn, arg, account = ctx->account, request = ctx->request] {
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

// Stages without needs read the request input; a stage with one need reads that stage's output;
// with several, a JSON object {need: output} and every need's attachments. A stream consumer's
// input is an empty object: its data arrives through next_item.
Payload Engine::Impl::input_of(RequestRun& run, const StageRun& stage) {
  const auto& needs = stage.config->needs;
  if (stage.config->stream_input) return Payload{};
  if (needs.empty()) return run.request.input;
  auto find = [&](const std::string& name) -> const StageRun& {
    for (const auto& s : run.stages)
      if (s.config->name == name) return s;
    throw std::logic_error("unknown need " + name);  // config validation rules this out
  };
  if (needs.size() == 1) return find(needs[0]).output;
  Payload merged;
  for (const auto& need : needs) {
    const StageRun& s = find(need);
    merged.json[need] = s.output.json;
    merged.attachments.insert(merged.attachments.end(), s.output.attachments.begin(), s.output.attachments.end());
  }
  return merged;
}

void Engine::Impl::start(const std::shared_ptr<RequestRun>& run) {
  const config::PipelineConfig& p = *run->pipeline;
  run->stages.resize(p.stages.size());
  auto index_of = [&](const std::string& name) {
    for (std::size_t i = 0; i < p.stages.size(); ++i)
      if (p.stages[i].name == name) return i;
    return p.stages.size();
  };
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    StageRun& s = run->stages[i];
    s.config = &p.stages[i];
    auto v = run->request.variants.find(s.config->name);
    s.variant = v != run->request.variants.end() ? v->second : s.config->stable;
    s.record.stage = s.config->name;
    s.record.requested_variant = s.variant;
  }
  for (auto& s : run->stages) {
    for (const auto& need : s.config->needs) {
      StageRun& up = run->stages[index_of(need)];
      up.needed_by.push_back(&s);
      ++s.blockers;
      if (s.config->stream_input) {
        s.stream_source = &up;
        up.unblock_on_start.push_back(&s);
      } else {
        up.unblock_on_end.push_back(&s);
      }
    }
    // `after` orders this variant behind a stage it does not read from.
    if (const config::VariantConfig* v = s.config->variant(s.variant)) {
      for (const auto& a : v->after) {
        run->stages[index_of(a)].unblock_on_end.push_back(&s);
        ++s.blockers;
      }
    }
  }
  std::unique_lock lock(run->mu);
  start_ready(run, lock);
  maybe_finish(run, lock);
}

void Engine::Impl::start_ready(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock) {
  const bool stopping = run->request.cancelled->load() || Clock::now() >= run->request.deadline;
  // Starting a stage can unblock a stream consumer declared before it: repeat until nothing starts.
  for (bool started = true; started;) {
    started = false;
    for (auto& s : run->stages) {
      if (s.state != State::Waiting || s.blockers > 0) continue;
      if (stopping) {
        s.state = State::Skipped;
        s.record.status = StageStatus::Skipped;
        s.record.error_class = PL_ERR_TIMEOUT;
        s.record.error_message = "request cancelled or past its deadline before the stage started";
        continue;
      }
      s.state = State::Running;
      ++run->running;
      for (StageRun* consumer : s.unblock_on_start) --consumer->blockers;
      launch(run, s);
      started = true;
    }
  }
  (void)lock;
}

void Engine::Impl::launch(const std::shared_ptr<RequestRun>& run, StageRun& stage) {
  pool.submit([this, run, &stage] { execute(run, stage); });
}

// Runs the requested variant, then stable when it failed and fallback applies. Called on a pool
// thread without the request lock: stage code runs unlocked.
void Engine::Impl::execute(const std::shared_ptr<RequestRun>& run, StageRun& stage) {
  {
    std::lock_guard lock(run->mu);
    stage.input = input_of(*run, stage);
  }
  stage.record.started = Clock::now();
  start_attempt(run, stage, stage.variant);
}

void Engine::Impl::start_attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant) {
  StageRecord& rec = stage.record;
  rec.variant = variant;
  ++rec.attempts;
  const plugin_host::StageInstance* instance = run->plugins->find(run->pipeline->name, stage.config->name, variant);
  if (instance == nullptr) {
    rec.status = StageStatus::Failed;
    rec.error_class = PL_ERR_INTERNAL;
    rec.error_message = "no plugin loaded for variant '" + variant + "'";
    return attempt_ended(run, stage, false);
  }
  rec.plugin_name = instance->plugin_name();
  rec.plugin_version = instance->plugin_version();

  auto* ctx = new pl_run_context;
  {
    std::lock_guard lock(live_mu);
    ++live_contexts;
  }
  ctx->request = run;
  ctx->stage = &stage;
  ctx->deadline = run->request.deadline;
  const Clock::time_point began = Clock::now();
  if (stage.config->timeout && began + *stage.config->timeout < ctx->deadline) {
    ctx->deadline = began + *stage.config->timeout;
    ctx->stage_timeout_limits = true;
  }
  ctx->account->parent = &run->account;
  int rc = PL_ERROR;
  {
    memory::ScopedAccount scope(ctx->account.get());
    const sdk::detail::CPayload c_input(stage.input);
    rc = instance->run(ctx, &c_input.view);
  }
  if (rc == PL_PENDING) {
    std::lock_guard lock(ctx->mu);
    ctx->run_returned = true;
    if (!ctx->completed) {
      std::lock_guard watch(pending_mu);
      pending.insert(ctx);
      pending_cv.notify_one();
      return;  // this pool thread is free; complete() or the watchdog goes on from here
    }
    rc = ctx->completed_status;
  }
  ctx->phase.store(pl_run_context::Completed);
  finish_attempt(ctx, rc);
}

namespace {
// Why an attempt past its deadline failed: the stage's own timeout or the request's deadline.
std::string deadline_message(const pl_run_context& ctx) {
  return ctx.stage_timeout_limits ? "stage timeout of " + std::to_string(ctx.stage->config->timeout->count()) + " ms passed"
                                  : "request deadline passed";
}
}  // namespace

// The plugin ended the run: its output, or why it failed.
void Engine::Impl::finish_attempt(pl_run_context* ctx, int rc) {
  {
    std::lock_guard lock(pending_mu);
    pending.erase(ctx);
  }
  const std::shared_ptr<RequestRun> run = ctx->request;
  memory::ScopedAccount scope(&run->account);  // ends before `run` may free the account
  StageRun& stage = *ctx->stage;
  StageRecord& rec = stage.record;
  ctx->current_item.reset();
  stage.peak = std::max(stage.peak, ctx->account->peak_bytes());

  // The plugin was asked to stop at the deadline (is_cancelled); its run still ends only when it
  // returns. Past the stage's own timeout the attempt counts as failed even if it produced output.
  const bool timed_out = Clock::now() >= ctx->deadline;
  bool ok = false;
  if (rc == PL_OK && !timed_out && (ctx->output || !ctx->emitted.empty())) {
    if (ctx->output) {
      stage.output = std::move(*ctx->output);
    } else {
      stage.output = Payload{};
      stage.output.json["items"] = nlohmann::json::array();
      for (auto& item : ctx->emitted) stage.output.json["items"].push_back(std::move(item.json));
    }
    rec.status = StageStatus::Ok;
    ok = true;
  } else {
    rec.status = StageStatus::Failed;
    if (timed_out) {
      rec.error_class = PL_ERR_TIMEOUT;
      rec.error_message = deadline_message(*ctx);
    } else if (rc == PL_OK) {
      rec.error_class = PL_ERR_INTERNAL;
      rec.error_message = "plugin returned PL_OK without an output";
    } else {
      rec.error_class = ctx->error_class.empty() ? PL_ERR_INTERNAL : ctx->error_class;
      rec.error_message = ctx->error_message.empty() ? "plugin returned code " + std::to_string(rc) : ctx->error_message;
    }
  }
  attempt_ended(run, stage, ok);
  release(ctx);  // last: the engine's destructor waits for this
}

// The watchdog gave up on a pending run (deadline or cancellation). The plugin may still use ctx
// until its complete(): only ctx's fixed fields and atomics are read here.
void Engine::Impl::abandon(pl_run_context* ctx) {
  const std::shared_ptr<RequestRun> run = ctx->request;
  memory::ScopedAccount scope(&run->account);  // ends before `run` may free the account
  StageRun& stage = *ctx->stage;
  StageRecord& rec = stage.record;
  stage.peak = std::max(stage.peak, ctx->account->peak_bytes());
  rec.status = StageStatus::Failed;
  rec.error_class = PL_ERR_TIMEOUT;
  rec.error_message = run->request.cancelled->load() ? "request cancelled" : deadline_message(*ctx);
  if (stage.stream_source != nullptr) stage.stream_source->emitted->wake_reader(ctx);
  attempt_ended(run, stage, false);
  release(ctx);
}

void Engine::Impl::attempt_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok) {
  StageRecord& rec = stage.record;
  if (!ok && rec.attempts == 1 && stage.variant != stage.config->stable && stage.config->fallback_to_stable &&
      !run->request.cancelled->load() && Clock::now() < run->request.deadline) {
    spdlog::info("[{}] {}/{}: variant {} failed ({}: {}); rerunning on stable {}", run->request.request_id,
                 run->pipeline->name, stage.config->name, stage.variant, rec.error_class, rec.error_message,
                 stage.config->stable);
    stage.first_error_class = rec.error_class;
    stage.first_error_message = rec.error_message;
    return start_attempt(run, stage, stage.config->stable);
  }
  if (ok && rec.attempts == 2) {
    rec.status = StageStatus::FellBack;
    rec.error_class = stage.first_error_class;
    rec.error_message = stage.first_error_message;
  }
  rec.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - rec.started);
  rec.peak_bytes = stage.peak;
  stage_ended(run, stage, ok);
}

void Engine::Impl::release(pl_run_context* ctx) {
  if (--ctx->holders > 0) return;
  delete ctx;
  std::lock_guard lock(live_mu);
  if (--live_contexts == 0) live_cv.notify_all();
}

void Engine::Impl::watch_pending() {
  std::unique_lock lock(pending_mu);
  while (!stopping) {
    if (pending.empty()) {
      pending_cv.wait(lock);
      continue;
    }
    // The period bounds how late a cancellation or a deadline is noticed.
    pending_cv.wait_for(lock, std::chrono::milliseconds(20));
    for (auto it = pending.begin(); it != pending.end();) {
      // A context in `pending` is alive: finish_attempt takes it out under pending_mu first.
      pl_run_context* ctx = *it;
      if (!cancelled(ctx)) {
        ++it;
        continue;
      }
      ++ctx->holders;  // before the phase changes: from then on the plugin's complete() releases
      int expected = pl_run_context::Running;
      if (!ctx->phase.compare_exchange_strong(expected, pl_run_context::Abandoned)) {
        --ctx->holders;  // it completed meanwhile; finish_attempt will take it out
        ++it;
        continue;
      }
      it = pending.erase(it);
      spdlog::warn("[{}] {}/{}: run still pending at its deadline or cancellation; going on without it",
                   ctx->request->request.request_id, ctx->request->pipeline->name, ctx->stage->config->name);
      submit(nullptr, [this, ctx] { abandon(ctx); });
    }
  }
}

void Engine::Impl::skip_dependants(RequestRun& run, StageRun& stage) {
  for (StageRun* d : stage.needed_by) {
    if (d->state != State::Waiting) continue;  // a running stream consumer sees the stream end
    d->state = State::Skipped;
    d->record.status = StageStatus::Skipped;
    d->record.error_message = "needs '" + stage.config->name + "', which has no output";
    skip_dependants(run, *d);
  }
}

void Engine::Impl::stage_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok) {
  stage.emitted->end();
  std::unique_lock lock(run->mu);
  --run->running;
  stage.state = ok ? State::Done : State::Failed;
  run->result.stages.push_back(stage.record);
  if (ok) {
    for (StageRun* d : stage.unblock_on_end) --d->blockers;
  } else {
    if (stage.config->on_failure == config::OnFailure::Fail) {
      if (run->result.error_class.empty()) {
        run->result.error_class = stage.record.error_class;
        run->result.error_message = stage.config->name + ": " + stage.record.error_message;
      }
      run->request.cancelled->store(true);  // running stages stop early; waiting ones are skipped
    }
    // Ordering-only waiters (`after`) may go on; readers of this output cannot.
    for (StageRun* d : stage.unblock_on_end) --d->blockers;
    skip_dependants(*run, stage);
  }
  start_ready(run, lock);
  maybe_finish(run, lock);
}

void Engine::Impl::maybe_finish(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock) {
  if (run->running > 0 || run->finished) return;
  run->finished = true;
  RunResult& r = run->result;
  bool failed_hard = false;
  for (auto& s : run->stages) {
    if (s.state == State::Done) {
      r.outputs[s.config->name] = std::move(s.output);
      if (s.record.status == StageStatus::FellBack) r.fell_back = true;
      continue;
    }
    r.missing.push_back(s.config->name);
    if (s.state == State::Skipped || s.state == State::Waiting) {
      if (s.state == State::Waiting) {
        s.record.status = StageStatus::Skipped;
        s.record.error_message = "not started";
      }
      r.stages.push_back(s.record);
    }
    if (s.state == State::Failed && s.config->on_failure == config::OnFailure::Fail) failed_hard = true;
    if (s.state == State::Skipped && s.record.error_class == PL_ERR_TIMEOUT) {  // cancelled or deadline
      failed_hard = true;
      if (r.error_class.empty()) {
        r.error_class = PL_ERR_TIMEOUT;
        r.error_message = s.config->name + ": " + s.record.error_message;
      }
    }
  }
  r.ok = r.missing.empty();
  r.partial = !r.ok && !failed_hard;
  if (r.partial) {
    r.error_class.clear();
    r.error_message.clear();
  } else if (!r.ok && r.error_class.empty()) {
    r.error_class = PL_ERR_INTERNAL;
    r.error_message = "stages without output: " + r.missing.front();
  }
  r.peak_bytes = run->account.peak_bytes();
  r.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - run->started);
  RunResult result = std::move(r);
  auto done = std::move(run->done);
  lock.unlock();
  // The caller's code is not this request's: nothing it allocates or submits may point at the
  // request's account, which ends with the request.
  memory::ScopedAccount no_account(nullptr);
  done(std::move(result));
}

Engine::Engine(pool::WorkerPool& pool, outbound::OutboundClient* outbound) : impl_(std::make_unique<Impl>(pool, outbound)) {
  impl_->services = {sizeof(pl_host_services), log,       remaining_ms,  is_cancelled, set_output,
                     set_error,                emit_item, next_item,     group_create, group_submit,
                     group_wait,               group_destroy, http_send, complete, post, poll_item};
  impl_->watchdog = std::thread([impl = impl_.get()] { impl->watch_pending(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(impl_->pending_mu);
    impl_->stopping = true;
  }
  impl_->pending_cv.notify_all();
  impl_->watchdog.join();
  std::unique_lock lock(impl_->live_mu);
  if (!impl_->live_cv.wait_for(lock, std::chrono::seconds(10), [&] { return impl_->live_contexts == 0; }))
    spdlog::error("engine: {} plugin runs never called complete(); their contexts are leaked", impl_->live_contexts);
}

const pl_host_services* Engine::services() const { return &impl_->services; }

void Engine::run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request, std::function<void(RunResult)> done) {
  auto run = std::make_shared<RequestRun>();
  run->engine = impl_.get();
  run->pool = &impl_->pool;
  run->outbound = impl_->outbound;
  run->plugins = std::move(plugins);
  run->request = std::move(request);
  run->done = std::move(done);
  run->pipeline = run->plugins && run->plugins->config ? run->plugins->config->pipeline(run->request.pipeline) : nullptr;
  if (run->pipeline == nullptr) {
    RunResult r;
    r.error_class = PL_ERR_INVALID_INPUT;
    r.error_message = "unknown pipeline '" + run->request.pipeline + "'";
    impl_->pool.submit([r = std::move(r), run]() mutable { run->done(std::move(r)); });
    return;
  }
  // The request's allocations from here on (stage inputs, outputs) are charged to its account.
  impl_->pool.submit([impl = impl_.get(), run] {
    memory::ScopedAccount scope(&run->account);
    impl->start(run);
  });
}

RunResult Engine::run_sync(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request) {
  std::promise<RunResult> promise;
  auto future = promise.get_future();
  run(std::move(plugins), std::move(request), [&promise](RunResult r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace pipelined::engine
