// The engine's scheduler (scheduler.h): the stage graph of one request, built from the pipeline's
// needs and `after`s; stages started as they become ready; each stage's attempts on the worker pool
// with a fallback rerun on stable; and the RunResult once every stage has ended.
#include "daemon/engine/scheduler.h"

#include "daemon/engine/run_context.h"
#include "daemon/engine/watchdog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace pipelined::engine {

Scheduler::Scheduler(pool::WorkerPool& pool, outbound::OutboundClient* outbound, Watchdog& watchdog)
    : pool_(pool), outbound_(outbound), watchdog_(watchdog) {}

void Scheduler::run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request,
                    std::function<void(RunResult)> done) {
  auto run = std::make_shared<RequestRun>();
  run->scheduler = this;
  run->pool = &pool_;
  run->outbound = outbound_;
  run->plugins = std::move(plugins);
  run->request = std::move(request);
  if (run->request.arrived == Clock::time_point{}) run->request.arrived = run->started;
  run->done = std::move(done);
  run->account.limit = run->request.memory_limit_bytes;
  run->account.cancel = run->request.cancelled.get();
  run->pipeline = run->plugins && run->plugins->config ? run->plugins->config->pipeline(run->request.pipeline) : nullptr;
  if (run->pipeline == nullptr) {
    RunResult r;
    r.error_class = PL_ERR_INVALID_INPUT;
    r.error_message = "unknown pipeline '" + run->request.pipeline + "'";
    pool_.submit([r = std::move(r), run]() mutable { run->done(std::move(r)); });
    return;
  }
  // The request's allocations from here on (stage inputs, outputs) are charged to its account.
  pool_.submit([this, run] {
    memory::ScopedAccount scope(&run->account);
    start(run);
  });
}

void Scheduler::submit(memory::MemoryAccount* account, std::function<void()> fn) {
  memory::ScopedAccount none(nullptr);
  pool_.submit([account, fn = std::move(fn)] {
    memory::ScopedAccount scope(account);
    fn();
  });
}

void Scheduler::release(pl_run_context* ctx) { watchdog_.release(ctx); }

// Stages without needs read the request input; a stage with one need reads that stage's output;
// with several, a JSON object {need: output} and every need's attachments. A stream consumer's
// input is an empty object: its data arrives through next_item.
Payload Scheduler::input_of(RequestRun& run, const StageRun& stage) {
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

void Scheduler::start(const std::shared_ptr<RequestRun>& run) {
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

void Scheduler::start_ready(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock) {
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

void Scheduler::launch(const std::shared_ptr<RequestRun>& run, StageRun& stage) {
  pool_.submit([this, run, &stage] { execute(run, stage); });
}

// Runs the requested variant, then stable when it failed and fallback applies. Called on a pool
// thread without the request lock: stage code runs unlocked.
void Scheduler::execute(const std::shared_ptr<RequestRun>& run, StageRun& stage) {
  {
    std::lock_guard lock(run->mu);
    stage.input = input_of(*run, stage);
  }
  stage.record.started = Clock::now();
  start_attempt(run, stage, stage.variant);
}

void Scheduler::start_attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant) {
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

  pl_run_context* ctx = watchdog_.new_context();
  ctx->request = run;
  ctx->stage = &stage;
  ctx->deadline = run->request.deadline;
  const Clock::time_point began = Clock::now();
  if (stage.config->timeout && began + *stage.config->timeout < ctx->deadline) {
    ctx->deadline = began + *stage.config->timeout;
    ctx->stage_timeout_limits = true;
  }
  ctx->account->parent = &run->account;
  int rc = PL_RUN_ERROR;
  {
    memory::ScopedAccount scope(ctx->account.get());
    const sdk::EncodedPayload c_input(stage.input);
    rc = instance->run(ctx, &c_input.view());
  }
  if (rc == PL_RUN_PENDING) {
    std::lock_guard lock(ctx->mu);
    ctx->run_returned = true;
    if (!ctx->completed) {
      watchdog_.watch(ctx);
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

// The memory cap cancels the request; whatever an attempt reports after that (a cancellation, a
// timeout, even an output) is failed as the cap's doing, so the cause is not lost.
bool over_memory(const RequestRun& run) { return run.account.exceeded.load(std::memory_order_relaxed); }

std::string memory_message(const RequestRun& run) {
  return "the request passed its memory cap of " + std::to_string(run.account.limit >> 20) + " MiB";
}
}  // namespace

// The plugin ended the run: its output, or why it failed.
void Scheduler::finish_attempt(pl_run_context* ctx, int rc) {
  watchdog_.unwatch(ctx);
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
  if (over_memory(*run)) {
    rec.status = StageStatus::Failed;
    rec.error_class = PL_ERR_MEMORY;
    rec.error_message = memory_message(*run);
  } else if (rc == PL_RUN_OK && !timed_out && (ctx->output || !ctx->emitted.empty())) {
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
    } else if (rc == PL_RUN_OK) {
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
void Scheduler::abandon(pl_run_context* ctx) {
  const std::shared_ptr<RequestRun> run = ctx->request;
  memory::ScopedAccount scope(&run->account);  // ends before `run` may free the account
  StageRun& stage = *ctx->stage;
  StageRecord& rec = stage.record;
  stage.peak = std::max(stage.peak, ctx->account->peak_bytes());
  rec.status = StageStatus::Failed;
  rec.error_class = over_memory(*run) ? PL_ERR_MEMORY : PL_ERR_TIMEOUT;
  rec.error_message = over_memory(*run)                ? memory_message(*run)
                      : run->request.cancelled->load() ? "request cancelled"
                                                       : deadline_message(*ctx);
  if (stage.stream_source != nullptr) stage.stream_source->emitted->wake_reader(ctx);
  attempt_ended(run, stage, false);
  release(ctx);
}

void Scheduler::attempt_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok) {
  StageRecord& rec = stage.record;
  if (!ok && rec.attempts == 1 && stage.variant != stage.config->stable && stage.config->fallback_to_stable &&
      !run->request.cancelled->load() && Clock::now() < run->request.deadline) {
    spdlog::info("[{}] {}/{}: variant {} failed ({}: {}); rerunning on stable {}", run->request.request_id,
                 run->pipeline->name, stage.config->name, stage.variant, rec.error_class, rec.error_message,
                 stage.config->stable);
    stage.first_error_class = rec.error_class;
    stage.first_error_message = rec.error_message;
    if (run->request.observer) run->request.observer({RunEvent::Kind::StageFallingBack, stage.config->name, &rec, nullptr});
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

void Scheduler::skip_dependants(RequestRun& run, StageRun& stage) {
  for (StageRun* d : stage.needed_by) {
    if (d->state != State::Waiting) continue;  // a running stream consumer sees the stream end
    d->state = State::Skipped;
    d->record.status = StageStatus::Skipped;
    d->record.error_message = "needs '" + stage.config->name + "', which has no output";
    skip_dependants(run, *d);
  }
}

void Scheduler::stage_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok) {
  stage.emitted->end();
  // Before the lock: the request cannot finish (and call `done`) until this stage is counted out below.
  if (run->request.observer) run->request.observer({RunEvent::Kind::StageEnded, stage.config->name, &stage.record, nullptr});
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

void Scheduler::maybe_finish(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock) {
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
  if (over_memory(*run)) {  // even when every stage got its output in: the cap is hard
    r.ok = r.partial = false;
    r.error_class = PL_ERR_MEMORY;
    r.error_message = memory_message(*run);
  }
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

}  // namespace pipelined::engine
