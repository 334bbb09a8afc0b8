#include "daemon/engine/engine.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <set>

#include "daemon/memory/memory_account.h"
#if PIPELINED_ENGINE_OUTBOUND
#include "daemon/outbound/outbound.h"
#endif

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
  std::mutex mu;
  std::condition_variable changed;
  std::deque<Payload> items;   // deque: references stay valid as items are appended
  std::set<std::string> seen;  // JSON text of every item, to drop a fallback rerun's repeats
  bool ended = false;

  void push(Payload item) {
    {
      std::lock_guard lock(mu);
      if (!seen.insert(item.json.dump()).second) return;
      items.push_back(std::move(item));
    }
    changed.notify_all();
  }
  void end() {
    {
      std::lock_guard lock(mu);
      ended = true;
    }
    changed.notify_all();
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
  Payload output;
  StageRecord record;
};

}  // namespace

struct RequestRun;
}  // namespace pipelined::engine

// One attempt of one stage of one request: what the host services act on.
struct pl_run_context {
  pipelined::engine::RequestRun* request = nullptr;
  pipelined::engine::StageRun* stage = nullptr;
  pipelined::engine::Clock::time_point deadline;  // min(request deadline, stage timeout)
  bool stage_timeout_limits = false;               // deadline comes from the stage's timeout
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

  Impl(pool::WorkerPool& p, outbound::OutboundClient* o) : pool(p), outbound(o) {}

  void start(const std::shared_ptr<RequestRun>& run);
  void start_ready(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  void launch(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  void execute(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  bool attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant, const Payload& input,
               std::int64_t& peak);
  void stage_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok);
  void skip_dependants(RequestRun& run, StageRun& stage);
  void maybe_finish(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  Payload input_of(RequestRun& run, const StageRun& stage);
};

namespace {

bool cancelled(pl_run_context* ctx) {
  return ctx->request->request.cancelled->load(std::memory_order_relaxed) || Clock::now() >= ctx->deadline;
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

int next_item(pl_run_context* ctx, pl_payload* item) {
  StageRun* source = ctx->stage->stream_source;
  if (source == nullptr) return PL_END;
  ItemStream& stream = *source->emitted;
  std::unique_lock lock(stream.mu);
  for (;;) {
    if (ctx->read_cursor < stream.items.size()) {
      const Payload& next = stream.items[ctx->read_cursor++];
      ctx->current_item.emplace(next);
      *item = ctx->current_item->view;
      return PL_OK;
    }
    if (stream.ended) return PL_END;
    if (cancelled(ctx)) return PL_CANCELLED;
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

int http_send(pl_run_context* ctx, const pl_http_request* request, pl_http_callback callback, void* user) {
#if PIPELINED_ENGINE_OUTBOUND
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
  client->send(std::move(r), [callback, user](outbound::Response response) {
    pl_http_response c{response.status,
                       response.body.data(),
                       response.body.size(),
                       response.error_class.empty() ? nullptr : response.error_class.c_str(),
                       response.error.empty() ? nullptr : response.error.c_str(),
                       response.attempts};
    callback(user, &c);
  });
  return PL_OK;
#else
  (void)ctx, (void)request, (void)callback, (void)user;
  return PL_ERROR;
#endif
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
  Payload input;
  {
    std::lock_guard lock(run->mu);
    input = input_of(*run, stage);
  }
  StageRecord& rec = stage.record;
  rec.started = Clock::now();
  std::int64_t peak = 0;
  bool ok = attempt(run, stage, stage.variant, input, peak);
  rec.attempts = 1;
  if (!ok && stage.variant != stage.config->stable && stage.config->fallback_to_stable &&
      !run->request.cancelled->load() && Clock::now() < run->request.deadline) {
    spdlog::info("[{}] {}/{}: variant {} failed ({}: {}); rerunning on stable {}", run->request.request_id,
                 run->pipeline->name, stage.config->name, stage.variant, rec.error_class, rec.error_message,
                 stage.config->stable);
    const std::string first_class = rec.error_class, first_message = rec.error_message;
    ok = attempt(run, stage, stage.config->stable, input, peak);
    rec.attempts = 2;
    if (ok) {
      rec.status = StageStatus::FellBack;
      rec.error_class = first_class;
      rec.error_message = first_message;
    }
  }
  rec.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - rec.started);
  rec.peak_bytes = peak;
  stage_ended(run, stage, ok);
}

bool Engine::Impl::attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant,
                           const Payload& input, std::int64_t& peak) {
  StageRecord& rec = stage.record;
  rec.variant = variant;
  const plugin_host::StageInstance* instance = run->plugins->find(run->pipeline->name, stage.config->name, variant);
  if (instance == nullptr) {
    rec.status = StageStatus::Failed;
    rec.error_class = PL_ERR_INTERNAL;
    rec.error_message = "no plugin loaded for variant '" + variant + "'";
    return false;
  }
  rec.plugin_name = instance->plugin_name();
  rec.plugin_version = instance->plugin_version();

  pl_run_context ctx;
  ctx.request = run.get();
  ctx.stage = &stage;
  ctx.deadline = run->request.deadline;
  const Clock::time_point began = Clock::now();
  if (stage.config->timeout && began + *stage.config->timeout < ctx.deadline) {
    ctx.deadline = began + *stage.config->timeout;
    ctx.stage_timeout_limits = true;
  }
  memory::MemoryAccount account;
  account.parent = &run->account;
  int rc = PL_ERROR;
  {
    memory::ScopedAccount scope(&account);
    const sdk::detail::CPayload c_input(input);
    rc = instance->run(&ctx, &c_input.view);
    ctx.current_item.reset();
  }
  peak = std::max(peak, account.peak_bytes());

  // The plugin was asked to stop at the deadline (is_cancelled); its run still ends only when it
  // returns. Past the stage's own timeout the attempt counts as failed even if it produced output.
  const bool timed_out = Clock::now() >= ctx.deadline;
  if (rc == PL_OK && !timed_out && (ctx.output || !ctx.emitted.empty())) {
    if (ctx.output) {
      stage.output = std::move(*ctx.output);
    } else {
      stage.output = Payload{};
      stage.output.json["items"] = nlohmann::json::array();
      for (auto& item : ctx.emitted) stage.output.json["items"].push_back(std::move(item.json));
    }
    rec.status = StageStatus::Ok;
    return true;
  }
  rec.status = StageStatus::Failed;
  if (timed_out) {
    rec.error_class = PL_ERR_TIMEOUT;
    rec.error_message = ctx.stage_timeout_limits ? "stage timeout of " + std::to_string(stage.config->timeout->count()) + " ms passed"
                                                 : "request deadline passed";
  } else if (rc == PL_OK) {
    rec.error_class = PL_ERR_INTERNAL;
    rec.error_message = "plugin returned PL_OK without an output";
  } else {
    rec.error_class = ctx.error_class.empty() ? PL_ERR_INTERNAL : ctx.error_class;
    rec.error_message = ctx.error_message.empty() ? "plugin returned code " + std::to_string(rc) : ctx.error_message;
  }
  return false;
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
                     group_wait,               group_destroy, http_send};
}

Engine::~Engine() = default;

const pl_host_services* Engine::services() const { return &impl_->services; }

void Engine::run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request, std::function<void(RunResult)> done) {
  auto run = std::make_shared<RequestRun>();
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
