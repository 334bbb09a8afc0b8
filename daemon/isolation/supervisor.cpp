// IsolatedVariant (supervisor.h): starting a runner, forwarding runs and their host-service calls
// across the socket, and failing, killing and restarting runners.
#include "daemon/isolation/supervisor.h"

#include "daemon/isolation/wire.h"
#include "daemon/memory/memory_account.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace pipelined::isolation {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{30000};
constexpr auto kStableUptime = std::chrono::seconds(60);  // a runner up this long resets the backoff
constexpr milliseconds kWatchTick{50};
constexpr auto kShutdownWait = std::chrono::seconds(5);

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

std::int64_t rss_of(int pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * ::sysconf(_SC_PAGESIZE);
}

struct Connection;

// One run forwarded to a runner. Its mutex orders every host-service call on ctx against the run's
// completion: none is made after `completed` is set.
struct RemoteRun {
  std::uint64_t id = 0;
  pl_run_context* ctx = nullptr;
  const pl_host_services* host = nullptr;
  std::shared_ptr<Connection> connection;  // the runner it went to; the cycle ends when the run does
  Clock::time_point deadline;
  std::mutex mu;
  bool completed = false;
  bool cancel_sent = false;
};

// One runner process and the runs in flight in it.
struct Connection {
  int pid = -1;
  int fd = -1;
  std::mutex write_mu;
  Clock::time_point started = Clock::now();
  std::thread reader;
  std::atomic<bool> ended{false};  // the reader saw the runner go
  std::atomic<std::int64_t> rss{0};
  std::int64_t instance_bytes = 0;  // what the plugin's create() kept in this runner; set before it is shared

  std::mutex mu;
  std::map<std::uint64_t, std::shared_ptr<RemoteRun>> runs;
  bool alive = true;        // false once the reader has failed the runs in flight
  std::string kill_reason;  // why the supervisor killed it, when it did

  ~Connection() {
    if (fd >= 0) ::close(fd);
  }
  bool send(FrameWriter& f) { return f.send(fd, write_mu); }
  void kill_with(std::string reason) {
    {
      std::lock_guard lock(mu);
      if (!kill_reason.empty()) return;
      kill_reason = std::move(reason);
    }
    ::kill(pid, SIGKILL);
  }
};

// Ends a run as failed. Under run.mu.
void fail_locked(RemoteRun& run, const std::string& error_class, const std::string& message) {
  if (run.completed) return;
  run.completed = true;
  run.host->set_error(run.ctx, error_class.c_str(), message.c_str());
  run.host->complete(run.ctx, PL_RUN_ERROR);
}

// Forwards the run's input stream to the runner: every item there is now, then the end, or a wake
// registered for the next change. Under run.mu.
void pump_items_locked(const std::shared_ptr<RemoteRun>& run);

void wake_pump(void* user) {
  std::unique_ptr<std::shared_ptr<RemoteRun>> holder(static_cast<std::shared_ptr<RemoteRun>*>(user));
  const std::shared_ptr<RemoteRun> run = *holder;
  std::lock_guard lock(run->mu);
  if (run->completed) return;
  // wake runs on the emitting stage's thread: the forwarding goes to the pool.
  run->host->post(
      run->ctx,
      [](void* arg) {
        std::unique_ptr<std::shared_ptr<RemoteRun>> held(static_cast<std::shared_ptr<RemoteRun>*>(arg));
        std::lock_guard inner((*held)->mu);
        if (!(*held)->completed) pump_items_locked(*held);
      },
      holder.release());
}

void pump_items_locked(const std::shared_ptr<RemoteRun>& run) {
  for (;;) {
    pl_payload item{};
    auto* holder = new std::shared_ptr<RemoteRun>(run);
    const int rc = run->host->poll_item(run->ctx, &item, wake_pump, holder);
    if (rc == PL_ITEM_PENDING) return;  // wake_pump owns the holder now
    delete holder;
    if (rc == PL_ITEM_OK) {
      FrameWriter f(FrameType::ItemIn, run->id);
      f.payload(item);
      if (!run->connection->send(f)) return;
      continue;
    }
    if (rc == PL_ITEM_END) {
      FrameWriter f(FrameType::ItemEnd, run->id);
      run->connection->send(f);
    }
    return;  // PL_ITEM_CANCELLED: the watch sends Cancel
  }
}

std::shared_ptr<RemoteRun> find_run(Connection& c, std::uint64_t id) {
  std::lock_guard lock(c.mu);
  auto it = c.runs.find(id);
  return it == c.runs.end() ? nullptr : it->second;
}

// An HTTP call a runner's plugin made, on its way through the daemon's client.
struct HttpCall {
  std::shared_ptr<Connection> connection;
  std::uint64_t id;
};

void answer_http(std::shared_ptr<Connection> connection, std::uint64_t id, const pl_http_response& r) {
  FrameWriter f(FrameType::HttpAnswer, id);
  f.u32(static_cast<std::uint32_t>(r.status)).bytes_ref(r.body, r.body ? r.body_size : 0);
  f.str(r.error_class ? r.error_class : "").str(r.error ? r.error : "").u32(static_cast<std::uint32_t>(r.attempts));
  connection->send(f);
}

void on_http(const std::shared_ptr<Connection>& c, const Frame& frame) {
  FrameReader in(frame);
  const std::uint64_t run_id = in.u64();
  const std::string provider = in.str(), method = in.str(), path = in.str();
  const std::uint32_t header_count = in.u32();
  std::vector<std::string> header_text;
  header_text.reserve(2 * std::min<std::uint32_t>(header_count, 1024));
  std::vector<pl_http_header> headers;
  for (std::uint32_t i = 0; i < header_count && !in.failed() && i < 1024; ++i) {
    header_text.push_back(in.str());
    header_text.push_back(in.str());
    headers.push_back({header_text[2 * i].c_str(), header_text[2 * i + 1].c_str()});
  }
  const std::string_view body = in.bytes();
  const std::int64_t timeout_ms = in.i64();
  const auto run = find_run(*c, run_id);
  if (in.failed() || !run) {
    const pl_http_response refused{0, nullptr, 0, PL_ERR_INTERNAL, in.failed() ? "malformed Http frame" : "the run has ended", 0};
    answer_http(c, frame.id, refused);
    return;
  }
  const pl_http_request request{provider.empty() ? nullptr : provider.c_str(),
                                method.c_str(),
                                path.c_str(),
                                headers.data(),
                                headers.size(),
                                body.data(),
                                body.size(),
                                timeout_ms};
  std::lock_guard lock(run->mu);
  int rc = PL_ERROR;
  if (!run->completed)
    rc = run->host->http_send(
        run->ctx, &request,
        [](void* user, const pl_http_response* response) {
          std::unique_ptr<HttpCall> call(static_cast<HttpCall*>(user));
          answer_http(call->connection, call->id, *response);
        },
        new HttpCall{c, frame.id});
  if (rc != PL_OK) {
    const pl_http_response refused{0, nullptr, 0, PL_ERR_INTERNAL, "the daemon has no HTTP client or the run has ended", 0};
    answer_http(c, frame.id, refused);
  }
}

// A Done frame: the run's result, set and completed on the pool, where the run's memory account is
// current, so the runner's peak for it is charged to the request like an in-process run's.
void on_done(const std::shared_ptr<Connection>& c, Frame frame) {
  std::shared_ptr<RemoteRun> run;
  {
    std::lock_guard lock(c->mu);
    auto it = c->runs.find(frame.id);
    if (it == c->runs.end()) return;
    run = it->second;
    c->runs.erase(it);
  }
  struct Finish {
    std::shared_ptr<RemoteRun> run;
    Frame frame;
  };
  std::lock_guard lock(run->mu);
  if (run->completed) return;
  run->host->post(
      run->ctx,
      [](void* arg) {
        std::unique_ptr<Finish> f(static_cast<Finish*>(arg));
        RemoteRun& r = *f->run;
        FrameReader in(f->frame);
        int status = static_cast<int>(in.u32());
        WirePayload output;
        std::string error_class, error_message;
        if (in.u32() == 1) {
          in.payload(output);
        } else {
          error_class = in.str();
          error_message = in.str();
        }
        const std::int64_t peak = in.i64();
        if (in.failed()) status = PL_RUN_ERROR, error_class = PL_ERR_INTERNAL, error_message = "malformed Done frame from the runner";
        if (memory::MemoryAccount* account = memory::current(); account != nullptr && peak > 0) {
          account->charge(peak);
          account->release(peak);
        }
        std::lock_guard inner(r.mu);
        if (r.completed) return;
        r.completed = true;
        if (status == PL_RUN_OK && r.host->set_output(r.ctx, &output.view) == PL_OK) {
          r.host->complete(r.ctx, PL_RUN_OK);
        } else {
          if (status == PL_RUN_OK) error_class = PL_ERR_INTERNAL, error_message = "the runner's output is not valid JSON";
          r.host->set_error(r.ctx, error_class.c_str(), error_message.c_str());
          r.host->complete(r.ctx, PL_RUN_ERROR);
        }
      },
      new Finish{run, std::move(frame)});
}

void on_item_or_log(Connection& c, const Frame& frame, const pl_host_services* host, const std::string& label) {
  const auto run = find_run(c, frame.id);
  FrameReader in(frame);
  if (frame.type == FrameType::Log) {
    const int level = static_cast<int>(in.u32());
    const std::string message = in.str();
    if (run) {
      std::lock_guard lock(run->mu);
      if (!run->completed) return host->log(run->ctx, level, message.c_str());
    }
    host->log(nullptr, level, (label + ": " + message).c_str());
    return;
  }
  WirePayload item;
  in.payload(item);
  if (!run || in.failed()) return;
  std::lock_guard lock(run->mu);
  if (!run->completed) host->emit_item(run->ctx, &item.view);
}

// Starts a runner process on one end of a socket pair.
std::shared_ptr<Connection> spawn(const RunnerOptions& o, std::string& error) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    error = std::string("socketpair: ") + std::strerror(errno);
    return nullptr;
  }
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  const std::string fd_arg = "3";
  std::vector<char*> argv = {const_cast<char*>(o.runner_path.c_str()), const_cast<char*>("--fd"), const_cast<char*>(fd_arg.c_str()),
                             nullptr};
  const rlimit limit{static_cast<rlim_t>(o.memory_limit_bytes), static_cast<rlim_t>(o.memory_limit_bytes)};
  const pid_t pid = ::fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    ::close(sv[0]), ::close(sv[1]);
    return nullptr;
  }
  if (pid == 0) {
    if (sv[1] == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else if (::dup2(sv[1], 3) < 0) {
      ::_exit(126);
    }
    ::close_range(4, ~0U, 0);
    if (o.memory_limit_bytes > 0) ::setrlimit(RLIMIT_AS, &limit);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(sv[1]);
  auto c = std::make_shared<Connection>();
  c->pid = pid;
  c->fd = sv[0];
  return c;
}

// Waits for the runner to end and says how it did.
std::string reap(Connection& c) {
  int status = 0;
  for (int i = 0; i < 200; ++i) {  // it closed its socket: it is exiting, or its reader broke
    const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) return describe_exit(status);
    if (r < 0) return "runner could not be waited for";
    std::this_thread::sleep_for(milliseconds(10));
  }
  ::kill(c.pid, SIGKILL);
  ::waitpid(c.pid, &status, 0);
  return "closed its socket and was killed";
}

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
