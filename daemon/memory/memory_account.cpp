#include "daemon/memory/memory_account.h"

#include <unistd.h>

#include <cstdio>

// Defined by the accounting object (operator_new.cpp) when it is linked and active. Weak, so a
// binary without it (plugins' tests, sanitizer builds) links and reports accounting as off.
extern "C" bool pipelined_memory_accounting_active() __attribute__((weak));

namespace pipelined::memory {
namespace {
// constinit: no TLS init guard, so operator new can read it cheaply, even during static init.
constinit thread_local MemoryAccount* t_current = nullptr;
}  // namespace

namespace {
// Off the hot path: charge() only compares against the limit.
[[gnu::noinline]] void over_limit(MemoryAccount& a) {
  if (a.exceeded.exchange(true, std::memory_order_relaxed)) return;
  if (a.cancel != nullptr) a.cancel->store(true, std::memory_order_relaxed);
}
}  // namespace

void MemoryAccount::charge(std::int64_t bytes) {
  for (MemoryAccount* a = this; a != nullptr; a = a->parent) {
    const std::int64_t now = a->current.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::int64_t seen = a->peak.load(std::memory_order_relaxed);
    while (now > seen && !a->peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
    if (a->limit > 0 && now > a->limit) over_limit(*a);
  }
}

// Memory may be freed on a thread whose account did not allocate it (see memory_account.h), so
// an account can be asked to release more than it holds: it stops at zero.
void MemoryAccount::release(std::int64_t bytes) {
  for (MemoryAccount* a = this; a != nullptr; a = a->parent) {
    std::int64_t seen = a->current.load(std::memory_order_relaxed);
    std::int64_t next = 0;
    do {
      next = seen > bytes ? seen - bytes : 0;
    } while (!a->current.compare_exchange_weak(seen, next, std::memory_order_relaxed));
  }
}

MemoryAccount* current() { return t_current; }

ScopedAccount::ScopedAccount(MemoryAccount* account) : previous_(t_current) { t_current = account; }
ScopedAccount::~ScopedAccount() { t_current = previous_; }

bool accounting_enabled() {
  return pipelined_memory_accounting_active != nullptr && pipelined_memory_accounting_active();
}

std::int64_t process_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long size = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

}  // namespace pipelined::memory
