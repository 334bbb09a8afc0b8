// IsolatedVariant (supervisor.h): a runner's lifecycle (started and made ready, watched for hangs
// and deaths, restarted with backoff, shut down) and runs handed to it. The protocol over one
// runner's socket is connection.cpp's.
#include "daemon/isolation/supervisor.h"

#include "daemon/isolation/connection.h"
#include "daemon/isolation/wire.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace pipelined::isolation {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{30000};
constexpr auto kStableUptime = std::chrono::seconds(60);  // a runner up this long resets the backoff
constexpr milliseconds kWatchTick{50};
constexpr auto kShutdownWait = std::chrono::seconds(5);

}  // namespace

struct IsolatedVariant::Impl {
  RunnerOptions options;
  const pl_host_services* host = nullptr;
  // The plugin's identity, from the first runner's Ready (later runners load the same file).
  std::string name, version, stage, variant;

  mutable std::mutex mu;
  std::condition_variable wake;
  std::shared_ptr<Connection> current;             // null or ended while the runner is down
  std::vector<std::shared_ptr<Connection>> ended;  // readers to join
  bool stopping = false;
  std::uint64_t next_run = 1;
  std::uint64_t crashes = 0, restarts = 0;
  std::string last_crash;
  milliseconds backoff = kFirstBackoff;
  Clock::time_point restart_at;
  std::thread watch;

  // Starts a runner and waits for its Ready. Null with `error` on failure.
  std::shared_ptr<Connection> launch(std::string& error) {
    auto c = spawn(options, error);
    if (!c) return nullptr;
    FrameWriter create(FrameType::Create, 0);
    create.str(options.plugin_file).str(options.config_json).u32(1).u32(options.threads);
    const auto give_up = [&](std::string why) {
      error = std::move(why);
      ::kill(c->pid, SIGKILL);
      int status;
      ::waitpid(c->pid, &status, 0);
      return nullptr;
    };
    if (!c->send(create)) return give_up("runner " + options.runner_path + " did not start (check runner_path)");
    const auto deadline = Clock::now() + options.startup_timeout;
    for (;;) {
      pollfd p{c->fd, POLLIN, 0};
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0)
        return give_up("runner did not answer within " + std::to_string(options.startup_timeout.count()) + " ms");
      auto frame = read_frame(c->fd);
      if (!frame) {
        int status = 0;
        ::waitpid(c->pid, &status, 0);
        error = "runner " + options.runner_path + " " + describe_exit(status) + " before it was ready" +
                (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (cannot execute it: check runner_path)" : "");
        return nullptr;
      }
      FrameReader in(*frame);
      if (frame->type == FrameType::Log) {
        const int level = static_cast<int>(in.u32());
        host->log(nullptr, level, (options.label + ": " + in.str()).c_str());
      } else if (frame->type == FrameType::Failed) {
        error = in.str();
        int status;
        ::waitpid(c->pid, &status, 0);
        return nullptr;
      } else if (frame->type == FrameType::Ready) {
        std::string ready[4] = {in.str(), in.str(), in.str(), in.str()};
        c->instance_bytes = in.i64();
        if (name.empty()) name = ready[0], version = ready[1], stage = ready[2], variant = ready[3];
        break;
      }
    }
    c->rss = rss_of(c->pid);
    c->reader = std::thread([this, c] { read_loop(c); });
    spdlog::info("isolation: {} runs in process {} ({} {})", options.label, c->pid, name, version);
    return c;
  }

  void read_loop(const std::shared_ptr<Connection>& c) {
    while (auto frame = read_frame(c->fd)) {
      switch (frame->type) {
        case FrameType::Done:
          on_done(c, std::move(*frame));
          break;
        case FrameType::ItemOut:
        case FrameType::Log:
          on_item_or_log(*c, *frame, host, options.label);
          break;
        case FrameType::Http:
          on_http(c, *frame);
          break;
        default:
          spdlog::warn("isolation: {}: unexpected frame type {}", options.label, static_cast<int>(frame->type));
      }
    }
    std::string reason = reap(*c);
    std::map<std::uint64_t, std::shared_ptr<RemoteRun>> in_flight;
    {
      std::lock_guard lock(c->mu);
      if (!c->kill_reason.empty()) reason = c->kill_reason;
      c->alive = false;
      in_flight.swap(c->runs);
    }
    const std::string message = "the runner of " + options.label + " " + reason;
    for (auto& [id, run] : in_flight) {
      std::lock_guard lock(run->mu);
      fail_locked(*run, PL_ERR_CRASHED, message);
    }
    c->ended = true;
    std::lock_guard lock(mu);
    if (stopping) return;
    ++crashes;
    last_crash = reason;
    if (Clock::now() - c->started >= kStableUptime) backoff = kFirstBackoff;
    restart_at = Clock::now() + backoff;
    spdlog::error("isolation: {} ({} runs failed); restarting in {} ms", message, in_flight.size(), backoff.count());
    backoff = std::min(backoff * 2, kMaxBackoff);
    wake.notify_all();
  }

  // Every tick: cancellations and hangs of the runs in flight, the RSS sample, and restarts.
  void watch_loop() {
    auto next_rss = Clock::now();
    std::unique_lock lock(mu);
    while (!stopping) {
      wake.wait_for(lock, kWatchTick);
      if (stopping) break;
      std::shared_ptr<Connection> c = current;
      std::vector<std::shared_ptr<Connection>> to_join;
      to_join.swap(ended);
      const bool down = !c || c->ended;
      const bool restart_due = down && Clock::now() >= restart_at;
      lock.unlock();
      for (auto& old : to_join)
        if (old->reader.joinable()) old->reader.join();
      if (restart_due) {
        restart();
      } else if (!down) {
        check_runs(*c);
        if (Clock::now() >= next_rss) {
          c->rss = rss_of(c->pid);
          next_rss = Clock::now() + std::chrono::seconds(1);
        }
      }
      lock.lock();
    }
  }

  void check_runs(Connection& c) {
    std::vector<std::shared_ptr<RemoteRun>> runs;
    {
      std::lock_guard lock(c.mu);
      for (auto& [id, run] : c.runs) runs.push_back(run);
    }
    const auto now = Clock::now();
    for (auto& run : runs) {
      std::unique_lock lock(run->mu);
      if (run->completed) continue;
      if (now > run->deadline + options.hang_grace) {
        lock.unlock();
        const auto late = std::chrono::duration_cast<milliseconds>(now - run->deadline).count();
        c.kill_with("was killed: a run was still going " + std::to_string(late) + " ms past its deadline (hung)");
        return;
      }
      if (!run->cancel_sent && run->host->is_cancelled(run->ctx)) {
        run->cancel_sent = true;
        FrameWriter f(FrameType::Cancel, run->id);
        c.send(f);
      }
    }
  }

  void restart() {
    std::string error;
    auto c = launch(error);
    std::lock_guard lock(mu);
    if (current) ended.push_back(current);
    if (!c) {
      ++crashes;
      last_crash = "restart failed: " + error;
      restart_at = Clock::now() + backoff;
      spdlog::error("isolation: {}: restart failed: {}; next try in {} ms", options.label, error, backoff.count());
      backoff = std::min(backoff * 2, kMaxBackoff);
      current = nullptr;
      return;
    }
    ++restarts;
    current = std::move(c);
  }
};

IsolatedVariant::IsolatedVariant(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<IsolatedVariant> IsolatedVariant::start(const RunnerOptions& options, const pl_host_services* host, std::string& error) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->host = host;
  impl->current = impl->launch(error);
  if (!impl->current) return nullptr;
  Impl* raw = impl.get();
  raw->watch = std::thread([raw] { raw->watch_loop(); });
  return std::unique_ptr<IsolatedVariant>(new IsolatedVariant(std::move(impl)));
}

IsolatedVariant::~IsolatedVariant() {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    c = impl_->current;
  }
  impl_->wake.notify_all();
  if (impl_->watch.joinable()) impl_->watch.join();
  for (auto& old : impl_->ended)
    if (old->reader.joinable()) old->reader.join();
  if (c && c->reader.joinable()) {
    FrameWriter shutdown(FrameType::Shutdown, 0);
    c->send(shutdown);
    const auto give_up = Clock::now() + kShutdownWait;
    while (!c->ended && Clock::now() < give_up) std::this_thread::sleep_for(milliseconds(5));
    if (!c->ended) c->kill_with("was killed: it did not exit within 5 s of shutdown");
    c->reader.join();
  }
  std::error_code ec;
  std::filesystem::remove(impl_->options.plugin_file, ec);
}

int IsolatedVariant::run(pl_run_context* ctx, const pl_payload* input) {
  auto run = std::make_shared<RemoteRun>();
  run->ctx = ctx;
  run->host = impl_->host;
  run->deadline = Clock::now() + milliseconds(std::max<std::int64_t>(0, impl_->host->remaining_ms(ctx)));
  std::shared_ptr<Connection> c;
  {
    std::lock_guard lock(impl_->mu);
    c = impl_->current;
    run->id = impl_->next_run++;
    if (!c || c->ended) {
      const auto wait = std::chrono::duration_cast<milliseconds>(impl_->restart_at - Clock::now()).count();
      const std::string why = "the runner of " + impl_->options.label + " is down (" + impl_->last_crash + "); restart in " +
                              std::to_string(std::max<std::int64_t>(0, wait)) + " ms";
      impl_->host->set_error(ctx, PL_ERR_CRASHED, why.c_str());
      return PL_RUN_ERROR;
    }
  }
  run->connection = c;
  {
    std::lock_guard lock(c->mu);
    if (!c->alive) {
      impl_->host->set_error(ctx, PL_ERR_CRASHED, ("the runner of " + impl_->options.label + " has just ended").c_str());
      return PL_RUN_ERROR;
    }
    c->runs[run->id] = run;
  }
  const std::int64_t deadline_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(run->deadline.time_since_epoch()).count();
  FrameWriter f(FrameType::Run, run->id);
  f.i64(deadline_ns).payload(*input);
  std::lock_guard lock(run->mu);  // a crash completes the run no earlier than this returns
  if (c->send(f) && !run->completed) pump_items_locked(run);
  return PL_RUN_PENDING;  // a failed send is the runner dying: its reader fails the run
}

const std::string& IsolatedVariant::plugin_name() const { return impl_->name; }
const std::string& IsolatedVariant::plugin_version() const { return impl_->version; }
const std::string& IsolatedVariant::stage() const { return impl_->stage; }
const std::string& IsolatedVariant::variant() const { return impl_->variant; }

RunnerStats IsolatedVariant::stats() const {
  RunnerStats s;
  std::lock_guard lock(impl_->mu);
  s.crashes = impl_->crashes;
  s.restarts = impl_->restarts;
  s.last_crash = impl_->last_crash;

  if (const auto& c = impl_->current; c && !c->ended) {
    s.up = true;
    s.pid = c->pid;
    s.rss_bytes = c->rss;
    s.instance_bytes = c->instance_bytes;
    std::lock_guard inner(c->mu);
    s.runs_in_flight = c->runs.size();
  }
  return s;
}

}  // namespace pipelined::isolation
