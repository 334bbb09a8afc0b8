// ItemStream (item_stream.h): appending a stage's emitted items, ending the stream, and waking the
// readers that wait on it. Wake callbacks are the plugins' code: they run after the lock is let go.
#include "daemon/engine/item_stream.h"

#include <utility>

namespace pipelined::engine {

namespace {
void wake_all(const std::vector<ItemStream::Waiter>& woken) {
  for (const auto& w : woken) w.wake(w.user);
}
}  // namespace

bool ItemStream::push(sdk::Payload item) {
  std::vector<Waiter> woken;
  {
    std::lock_guard lock(mu);
    if (!seen.insert(item.json.dump()).second) return false;
    items.push_back(std::move(item));
    woken.swap(waiters);
  }
  changed.notify_all();
  wake_all(woken);
  return true;
}

void ItemStream::end() {
  std::vector<Waiter> woken;
  {
    std::lock_guard lock(mu);
    ended = true;
    woken.swap(waiters);
  }
  changed.notify_all();
  wake_all(woken);
}

void ItemStream::wake_reader(const pl_run_context* reader) {
  std::vector<Waiter> woken;
  {
    std::lock_guard lock(mu);
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (it->reader == reader) {
        woken.push_back(*it);
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
  }
  wake_all(woken);
}

}  // namespace pipelined::engine
