// sd_notify messages on a socket the test binds, and the watchdog's gating on the pool probe.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <cstdlib>

#include "daemon/notify/notify.h"
#include "tests/notify/notify_socket.h"

namespace pipelined::testing {
namespace {

using namespace std::chrono_literals;

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/pipelined-notify-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path_.c_str());
    socket_ = std::make_unique<NotifySocket>(path_);
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
  }
  std::string path_;
  std::unique_ptr<NotifySocket> socket_;
};

TEST_F(NotifyTest, SendsStates) {
  notify::ready();
  EXPECT_TRUE(socket_->wait_for("READY=1", 2s)) << socket_->seen();
  notify::reloading();
  EXPECT_TRUE(socket_->wait_for("RELOADING=1", 2s)) << socket_->seen();
  notify::stopping();
  EXPECT_TRUE(socket_->wait_for("STOPPING=1", 2s)) << socket_->seen();
}

TEST_F(NotifyTest, WatchdogPingsOnlyWhileThePoolAnswers) {
  ::setenv("WATCHDOG_USEC", "150000", 1);
  std::atomic<bool> answers{false};
  std::atomic<int> probes{0};
  notify::Watchdog watchdog([&](std::chrono::milliseconds) {
    ++probes;
    return answers.load();
  });
  EXPECT_FALSE(socket_->wait_for("WATCHDOG=1", 400ms)) << socket_->seen();
  EXPECT_GE(probes.load(), 2);
  answers = true;
  EXPECT_TRUE(socket_->wait_for("WATCHDOG=1", 2s)) << socket_->seen();
}

TEST_F(NotifyTest, NoWatchdogWithoutWatchdogUsec) {
  std::atomic<int> probes{0};
  {
    notify::Watchdog watchdog([&](std::chrono::milliseconds) {
      ++probes;
      return true;
    });
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(probes.load(), 0);
}

}  // namespace
}  // namespace pipelined::testing
