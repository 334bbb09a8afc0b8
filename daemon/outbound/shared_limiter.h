// Provider limits shared by the replicas that call one provider account, kept in Redis
// (config: shared_limits, docs/configuration.md). The outbound client asks acquire() before it
// starts calls its local limits allow; one atomic Lua script (EVALSHA) per acquisition (for up to
// `wanted` calls at once, the first that fit granted, in order) checks and takes, per call:
//   - requests per minute: GCRA with the local bucket's shape (bursts up to requests_per_minute,
//     requests_per_minute sustained per minute), Redis' clock (TIME), so replicas' clocks don't matter;
//   - in flight: a ZSET of leases scored by their expiry (now + the call's timeout + 1 s). release()
//     removes a lease when its call completes; a replica that crashed leaves leases that the script
//     drops once they expire, so its slots come back after at most one call timeout.
// Keys: pipelined:{<provider>}:rate and pipelined:{<provider>}:inflight (one hash slot per provider).
//
// A slot held elsewhere frees without notice: a "wait" for a slot is at most 10 ms (polling).
// Calls started while down hold no lease: for as long as they run after Redis is back, the provider
// can see them on top of the shared max_in_flight.
//
// Redis unreachable (connect refused, timeout, error reply): up() turns false at once, with a reason,
// and the caller falls back to local limits of ceil(limit / expected_replicas) (local_share()). While
// down, acquire() and release() do nothing and maintain() reconnects at most once per second. One
// warning when falling back, one info line when back.
//
// Not thread-safe: the outbound client's I/O thread alone uses it. acquire() is synchronous with
// `timeout_ms` per call (releases are sent without waiting): on loopback or in one zone a round trip
// takes ~0.1 ms, simpler than hiredis' async client beside the curl loop and cheaper than what it
// would save; the worst case is one stall of timeout_ms, after which the limiter is down and no call
// waits on Redis until a reconnect (at most once a second, also at most timeout_ms).
#pragma once

#include "daemon/config/config.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

struct redisContext;

namespace pipelined::outbound {

class SharedLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    enum class Kind { Granted, Wait, Unavailable };
    Kind kind = Kind::Unavailable;
    // Granted: one lease per call granted (1..wanted, for the first calls in order); hand each to
    // release() when its call completes.
    std::vector<std::string> leases;
    // Fewer granted than wanted (Wait: none): ask again for the rest no sooner than this.
    std::chrono::milliseconds retry_after{0};
  };

  // Connects at once (a failure only logs: the limiter starts down and maintain() retries).
  explicit SharedLimiter(const config::SharedLimitsConfig& config);
  ~SharedLimiter();
  SharedLimiter(const SharedLimiter&) = delete;
  SharedLimiter& operator=(const SharedLimiter&) = delete;

  // The start of up to `wanted` calls for `provider` with its limits (requests_per_minute 0: no rate
  // limit), in one round trip: the first calls that fit are granted, the rest wait. `lease_for`: the
  // longest one of the calls can take (its timeout); a slot is held at most that + 1 s.
  // Unavailable when down or when this call fails (then the limiter is down).
  Decision acquire(const std::string& provider, double requests_per_minute, int max_in_flight, std::chrono::milliseconds lease_for,
                   int wanted = 1);
  // The call holding `lease` completed. The ZREM is written at once and its reply read later (by the
  // next acquire() or maintain()), so a release costs no round trip. Errors take the limiter down;
  // the lease then expires in Redis.
  void release(const std::string& provider, const std::string& lease);
  // Call once per loop turn. Up: reads the replies of releases sent since (usually arrived already),
  // and sends a PING when Redis has not answered for a second (so up() follows Redis without
  // traffic). Down: reconnects when a second has passed since the last attempt.
  void maintain(Clock::time_point now);

  bool up() const { return ctx_ != nullptr; }
  const std::string& reason() const { return reason_; }  // why down ("" when up)
  int expected_replicas() const { return config_.expected_replicas; }

  // The local limit each replica keeps while Redis is unreachable: ceil(limit / replicas), at least 1.
  static int local_share(int limit, int replicas);
  static double local_share(double requests_per_minute, int replicas);  // 0 stays 0 (unlimited)

 private:
  bool connect();
  bool down(const std::string& why);  // drops the connection, logs once per outage; returns false
  bool drain_releases();              // reads the pending releases' replies; false: down

  config::SharedLimitsConfig config_;
  redisContext* ctx_ = nullptr;
  std::string sha_;      // the script's SHA1 from SCRIPT LOAD
  std::string reason_;   // why down
  bool warned_ = false;  // a warning logged for the current outage
  bool ever_up_ = false;
  Clock::time_point last_attempt_{};
  Clock::time_point last_answer_{};  // the last acquire() or PING Redis answered
  std::string lease_prefix_;         // random per limiter: leases of replicas never collide
  std::uint64_t leases_ = 0;
  int pending_releases_ = 0;  // ZREMs sent whose replies are not read yet
};

}  // namespace pipelined::outbound
