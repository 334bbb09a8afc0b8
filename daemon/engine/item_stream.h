// ItemStream: the items one stage emits, read by the stage that consumes it as a stream (engine
// internal; not part of engine.h). Items are kept so a fallback rerun of the consumer can read them
// again from the start; a fallback rerun of the producer does not repeat an item already emitted.
#pragma once

#include "daemon/plugin_host/plugin_host.h"

#include <pipelined/payload.hpp>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace pipelined::engine {

struct ItemStream {
  // An asynchronous reader (poll_item) waiting for the stream to change.
  struct Waiter {
    const pl_run_context* reader;
    void (*wake)(void*);
    void* user;
    std::shared_ptr<const plugin_host::PluginSet> plugins;  // wake is the plugin's code
  };

  std::mutex mu;
  std::condition_variable changed;
  std::deque<sdk::Payload> items;  // deque: references stay valid as items are appended
  std::set<std::string> seen;      // JSON text of every item, to drop a fallback rerun's repeats
  bool ended = false;
  std::vector<Waiter> waiters;

  // Appends an item not seen before and wakes every reader; false when it was a repeat.
  bool push(sdk::Payload item);
  // Marks the end of the stream (the producing stage ended) and wakes every reader.
  void end();
  // Wakes `reader` if it waits (its run was abandoned: it should see the cancellation).
  void wake_reader(const pl_run_context* reader);
};

}  // namespace pipelined::engine
