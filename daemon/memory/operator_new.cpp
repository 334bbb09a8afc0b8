// Global operator new/delete that charge the allocating thread's MemoryAccount. Linked into the
// pipelined executable (and the tests and benchmarks that measure memory); plugins resolve
// operator new to it because the executable exports its symbols.
//
// Frees are released against the account current on the freeing thread, which may not be the one
// that allocated (a request's result freed by the server thread, say). Nothing is stored per
// block, so an account that is gone before its memory is freed is never touched again; the price
// is that peak_bytes counts a block freed elsewhere as still live, which errs high, never low.
//
// Under AddressSanitizer or ThreadSanitizer the runtime owns operator new: the replacement is
// compiled out and accounting_enabled() is false.
#include <malloc.h>

#include <cstdlib>
#include <new>

#include "daemon/memory/memory_account.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PIPELINED_ACCOUNTING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PIPELINED_ACCOUNTING 0
#endif
#endif
#ifndef PIPELINED_ACCOUNTING
#define PIPELINED_ACCOUNTING 1
#endif

#if PIPELINED_ACCOUNTING

extern "C" bool pipelined_memory_accounting_active() { return true; }

namespace {
using pipelined::memory::MemoryAccount;

void* charged(void* p) {
  if (p != nullptr) {
    if (MemoryAccount* a = pipelined::memory::current()) a->charge(static_cast<std::int64_t>(malloc_usable_size(p)));
  }
  return p;
}

void released(void* p) noexcept {
  if (p == nullptr) return;
  if (MemoryAccount* a = pipelined::memory::current()) a->release(static_cast<std::int64_t>(malloc_usable_size(p)));
  std::free(p);
}

void* allocate(std::size_t n) {
  for (;;) {
    if (void* p = std::malloc(n == 0 ? 1 : n)) return charged(p);
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* allocate_aligned(std::size_t n, std::align_val_t al) {
  const std::size_t align = static_cast<std::size_t>(al) < sizeof(void*) ? sizeof(void*) : static_cast<std::size_t>(al);
  for (;;) {
    void* p = nullptr;
    if (posix_memalign(&p, align, n == 0 ? 1 : n) == 0) return charged(p);
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

template <typename F>
void* no_throw(F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return nullptr;
  }
}
}  // namespace

void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return no_throw([&] { return allocate(n); }); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return no_throw([&] { return allocate(n); }); }
void* operator new(std::size_t n, std::align_val_t al) { return allocate_aligned(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return allocate_aligned(n, al); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return no_throw([&] { return allocate_aligned(n, al); });
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return no_throw([&] { return allocate_aligned(n, al); });
}

void operator delete(void* p) noexcept { released(p); }
void operator delete[](void* p) noexcept { released(p); }
void operator delete(void* p, std::size_t) noexcept { released(p); }
void operator delete[](void* p, std::size_t) noexcept { released(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { released(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { released(p); }
void operator delete(void* p, std::align_val_t) noexcept { released(p); }
void operator delete[](void* p, std::align_val_t) noexcept { released(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { released(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { released(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { released(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { released(p); }

#endif  // PIPELINED_ACCOUNTING
