// The calls waiting for one provider's slot (max_in_flight) or token (requests_per_minute), in the
// order they are started. The slots are shared by every user request: started in the order the calls
// were sent, the calls of N concurrent requests interleave and each request waits behind the others'
// calls. Started oldest user request first (QueueOrder::Request), the older requests finish sooner
// and the provider is kept as busy as before (docs/benchmarks.md, "Provider queue order").
// The queue is also indexed by deadline, so a call whose deadline passes while it waits fails then,
// wherever it stands in the order.
#pragma once

#include "daemon/config/config.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace pipelined::outbound {

struct Call;

class CallQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Order = config::ProviderConfig::QueueOrder;

  // `request_arrived`: when the user request the call belongs to arrived; `seq`: the call's place in
  // the order calls were sent (unique), which breaks ties. A retry is pushed again with both
  // unchanged, so it keeps its place.
  void push(Call* call, Clock::time_point request_arrived, std::uint64_t seq, Clock::time_point deadline);
  bool empty() const { return waiting_.empty(); }
  std::size_t size() const { return waiting_.size(); }
  // The first `n` calls (fewer when fewer wait), in the order pop_front() would return them.
  std::vector<Call*> first(std::size_t n) const;
  Call* pop_front();
  // Removes and returns the calls whose deadline is at or before `now`, earliest deadline first.
  std::vector<Call*> pop_expired(Clock::time_point now);
  Clock::time_point earliest_deadline() const;  // time_point::max() when empty
  std::vector<Call*> take_all();
  // A config reload can change the order: what waits is sorted again.
  void set_order(Order order);

 private:
  struct Entry {
    Call* call;
    Clock::time_point request_arrived, deadline;
  };
  // (rank, seq): rank is the request's arrival under Order::Request and the same for all under
  // Order::Arrival, where seq alone orders.
  using Key = std::pair<Clock::time_point, std::uint64_t>;
  Key key(const Entry& e, std::uint64_t seq) const;

  Order order_ = Order::Request;
  std::map<Key, Entry> waiting_;
  std::set<std::pair<Clock::time_point, Key>> deadlines_;
};

}  // namespace pipelined::outbound
