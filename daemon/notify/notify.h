// Tells systemd (Type=notify) where the daemon is in its life: READY=1 once the listeners are up,
// RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 when draining, and WATCHDOG=1 pings
// while the daemon still does work. Without NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace pipelined::notify {

void ready();
void reloading();
void stopping();

// When systemd set WATCHDOG_USEC (WatchdogSec=), pings WATCHDOG=1 from its own thread every
// third of the interval, but only after `answers(timeout)` returned true: the probe should hand
// a no-op to the worker pool and wait for it, so a wedged pool stops the pings and systemd
// restarts the daemon. Without a watchdog it starts no thread.
class Watchdog {
 public:
  explicit Watchdog(std::function<bool(std::chrono::milliseconds timeout)> answers);
  ~Watchdog();  // stops the thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::notify
