// One runner process as the supervisor (supervisor.cpp) sees it: the socket and the runs in flight
// in it, and the run protocol over that socket (wire.h): a run's input stream forwarded, its
// host-service calls (HTTP, items, logs) answered, its Done frame turned into the run's result;
// and starting and reaping the process. Internal to pipelined_isolation.
#pragma once

#include "daemon/isolation/supervisor.h"
#include "daemon/isolation/wire.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace pipelined::isolation {

using Clock = std::chrono::steady_clock;

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

  ~Connection();  // closes the socket
  bool send(FrameWriter& f);
  // SIGKILLs the runner, remembering why (the first reason given wins).
  void kill_with(std::string reason);
};

// Ends a run as failed. Under run.mu.
void fail_locked(RemoteRun& run, const std::string& error_class, const std::string& message);
// Forwards the run's input stream to the runner: every item there is now, then the end, or a wake
// registered for the next change. Under run.mu.
void pump_items_locked(const std::shared_ptr<RemoteRun>& run);

// The frames a runner sends while it runs (the reader thread's dispatch, supervisor.cpp).
// Http: the plugin's HTTP call through the daemon's client; the answer goes back as HttpAnswer.
void on_http(const std::shared_ptr<Connection>& c, const Frame& frame);
// Done: the run's result, set and completed on the pool, where the run's memory account is
// current, so the runner's peak for it is charged to the request like an in-process run's.
void on_done(const std::shared_ptr<Connection>& c, Frame frame);
// ItemOut and Log: an item the run emitted, or a log line (the run's, or the runner's own).
void on_item_or_log(Connection& c, const Frame& frame, const pl_host_services* host, const std::string& label);

// Starts a runner process on one end of a socket pair; null with `error` set when it cannot.
std::shared_ptr<Connection> spawn(const RunnerOptions& o, std::string& error);
// Waits for the runner to end (it closed its socket) and says how it did.
std::string reap(Connection& c);
// "killed by signal 11 (SIGSEGV)", "exited with status 3", ...
std::string describe_exit(int status);
// The process's resident memory in bytes (/proc/PID/statm), 0 when it cannot be read.
std::int64_t rss_of(int pid);

}  // namespace pipelined::isolation
