#include "daemon/outbound/call_queue.h"

namespace pipelined::outbound {

CallQueue::Key CallQueue::key(const Entry& e, std::uint64_t seq) const {
  return {order_ == Order::Request ? e.request_arrived : Clock::time_point{}, seq};
}

void CallQueue::push(Call* call, Clock::time_point request_arrived, std::uint64_t seq, Clock::time_point deadline) {
  const Entry e{call, request_arrived, deadline};
  const Key k = key(e, seq);
  waiting_.emplace(k, e);
  deadlines_.emplace(deadline, k);
}

std::vector<Call*> CallQueue::first(std::size_t n) const {
  std::vector<Call*> out;
  for (auto it = waiting_.begin(); it != waiting_.end() && out.size() < n; ++it) out.push_back(it->second.call);
  return out;
}

Call* CallQueue::pop_front() {
  if (waiting_.empty()) return nullptr;
  auto it = waiting_.begin();
  Call* call = it->second.call;
  deadlines_.erase({it->second.deadline, it->first});
  waiting_.erase(it);
  return call;
}

std::vector<Call*> CallQueue::pop_expired(Clock::time_point now) {
  std::vector<Call*> out;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto it = waiting_.find(deadlines_.begin()->second);
    out.push_back(it->second.call);
    waiting_.erase(it);
    deadlines_.erase(deadlines_.begin());
  }
  return out;
}

CallQueue::Clock::time_point CallQueue::earliest_deadline() const {
  return deadlines_.empty() ? Clock::time_point::max() : deadlines_.begin()->first;
}

std::vector<Call*> CallQueue::take_all() {
  std::vector<Call*> out;
  for (const auto& [k, e] : waiting_) out.push_back(e.call);
  waiting_.clear();
  deadlines_.clear();
  return out;
}

void CallQueue::set_order(Order order) {
  if (order == order_) return;
  order_ = order;
  std::map<Key, Entry> resorted;
  deadlines_.clear();
  for (const auto& [k, e] : waiting_) {
    const Key nk = key(e, k.second);
    resorted.emplace(nk, e);
    deadlines_.emplace(e.deadline, nk);
  }
  waiting_ = std::move(resorted);
}

}  // namespace pipelined::outbound
