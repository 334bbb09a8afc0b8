// The run protocol over one runner's socket, and starting and reaping the runner (connection.h).
#include "daemon/isolation/connection.h"

#include "daemon/memory/memory_account.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace pipelined::isolation {

namespace {

using std::chrono::milliseconds;

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

}  // namespace

Connection::~Connection() {
  if (fd >= 0) ::close(fd);
}

bool Connection::send(FrameWriter& f) { return f.send(fd, write_mu); }

void Connection::kill_with(std::string reason) {
  {
    std::lock_guard lock(mu);
    if (!kill_reason.empty()) return;
    kill_reason = std::move(reason);
  }
  ::kill(pid, SIGKILL);
}

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

void fail_locked(RemoteRun& run, const std::string& error_class, const std::string& message) {
  if (run.completed) return;
  run.completed = true;
  run.host->set_error(run.ctx, error_class.c_str(), message.c_str());
  run.host->complete(run.ctx, PL_RUN_ERROR);
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

}  // namespace pipelined::isolation
