#include "daemon/server/crash_marker.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

namespace pipelined::server {

namespace {

// Async-signal-safe state: fixed buffers, swapped by index so the handler never reads a buffer
// being written.
char marker_path[4096];
char suspects[2][2048];
std::atomic<int> current{0};

void append(char* out, std::size_t cap, std::size_t& n, const char* text) {
  while (*text && n + 1 < cap) out[n++] = *text++;
}

void on_fatal(int sig) {
  char text[2300];
  std::size_t n = 0;
  append(text, sizeof text, n, "signal ");
  char num[8];
  int k = 0, v = sig;
  do num[k++] = static_cast<char>('0' + v % 10), v /= 10;
  while (v && k < 7);
  while (k) text[n++] = num[--k];
  append(text, sizeof text, n, " (");
  append(text, sizeof text, n, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
  append(text, sizeof text, n, ")");
  const char* s = suspects[current.load(std::memory_order_acquire)];
  if (*s) {
    append(text, sizeof text, n, "; non-stable plugins loaded: ");
    append(text, sizeof text, n, s);
  }
  const int fd = ::open(marker_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] auto w = ::write(fd, text, n);
    ::close(fd);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void install_crash_marker(const std::string& path) {
  std::snprintf(marker_path, sizeof marker_path, "%s", path.c_str());
  struct sigaction sa {};
  sa.sa_handler = on_fatal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &sa, nullptr);
}

void set_crash_suspects(const std::string& text) {
  static std::mutex mu;  // writers take turns; the handler only reads the published buffer
  std::lock_guard lock(mu);
  const int next = 1 - current.load(std::memory_order_relaxed);
  std::snprintf(suspects[next], sizeof suspects[next], "%s", text.c_str());
  current.store(next, std::memory_order_release);
}

std::optional<std::string> take_crash_marker(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  in.close();
  std::remove(path.c_str());
  return text.str();
}

}  // namespace pipelined::server
