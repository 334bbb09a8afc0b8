#include "daemon/notify/notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace pipelined::notify {

namespace {

void send(const char* state) {
  const int r = sd_notify(0, state);
  if (r < 0) spdlog::warn("sd_notify({}) failed: error {}", state, -r);
}

}  // namespace

void ready() { send("READY=1"); }
void reloading() { send("RELOADING=1"); }
void stopping() { send("STOPPING=1"); }

struct Watchdog::Impl {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
};

Watchdog::Watchdog(std::function<bool(std::chrono::milliseconds)> answers) : impl_(std::make_unique<Impl>()) {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds(usec / 3));
  spdlog::info("systemd watchdog: {} ms; pinging every {} ms while the worker pool answers", usec / 1000, period.count());
  impl_->thread = std::thread([impl = impl_.get(), period, answers = std::move(answers)] {
    std::unique_lock lock(impl->mu);
    while (!impl->stop) {
      lock.unlock();
      const bool alive = answers(period);
      lock.lock();
      if (impl->stop) break;
      if (alive) send("WATCHDOG=1");
      else spdlog::warn("systemd watchdog: the worker pool did not answer within {} ms; no ping", period.count());
      impl->cv.wait_for(lock, period, [impl] { return impl->stop; });
    }
  });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace pipelined::notify
