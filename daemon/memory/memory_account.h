// Per-request heap accounting. The daemon replaces global operator new/delete (operator_new.cpp,
// the pipelined_memory_accounting object library, linked into the pipelined executable) and charges every allocation to the MemoryAccount
// installed on the allocating thread. The worker pool carries the account into the tasks it runs,
// so work a request hands to pool threads is charged to that request. Plugins are shared libraries
// that resolve operator new to the executable's, so their allocations are charged too; C code that
// calls malloc directly (libcurl, tesseract) is not. A block freed on a thread with another
// account is released from that account (clamped at zero), so peaks err high, never low.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pipelined::memory {

struct MemoryAccount {
  std::atomic<std::int64_t> current{0};
  std::atomic<std::int64_t> peak{0};
  MemoryAccount* parent = nullptr;  // stage account charges its request account too
  // A request's cap (0: none). Passing it sets `exceeded` and `cancel` once; the allocation itself
  // still succeeds, so the request stops at its next cancellation check instead of the allocator
  // throwing into code that may not expect it.
  std::int64_t limit = 0;
  std::atomic<bool>* cancel = nullptr;
  std::atomic<bool> exceeded{false};

  void charge(std::int64_t bytes);
  void release(std::int64_t bytes);
  std::int64_t peak_bytes() const { return peak.load(std::memory_order_relaxed); }
};

// The account charged by allocations on this thread; null when none.
MemoryAccount* current();

// Installs an account on this thread for its lifetime and restores the previous one after.
class ScopedAccount {
 public:
  explicit ScopedAccount(MemoryAccount* account);
  ~ScopedAccount();
  ScopedAccount(const ScopedAccount&) = delete;
  ScopedAccount& operator=(const ScopedAccount&) = delete;

 private:
  MemoryAccount* previous_;
};

// True when the accounting operator new is linked into this process.
bool accounting_enabled();

// Resident set size of the process in bytes, from /proc/self/statm.
std::int64_t process_rss_bytes();

}  // namespace pipelined::memory
