#include "daemon/outbound/shared_limiter.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

namespace pipelined::outbound {

namespace {

// KEYS: rate, inflight. ARGV: requests_per_minute, max_in_flight, lease_ms, lease id prefix, slot
// poll ms, wanted. Grants up to `wanted` calls, each a request of the rate and a lease "<prefix><i>"
// (i from 1), stopping at the first that does not fit. Returns {granted, wait ms}: wait is 0 when all
// were granted, else when to ask again for the rest.
constexpr const char* kScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local max_in_flight = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local wanted = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[2])
local interval, tau, tat = 0, 0, now
if rpm > 0 then
  interval = 60000 / rpm
  tau = (math.max(1, rpm) - 1) * interval
  tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
end
local granted, wait = 0, 0
while granted < wanted do
  if in_flight >= max_in_flight then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    wait = math.max(1, math.min(tonumber(first[2]) - now, tonumber(ARGV[5])))
  end
  if rpm > 0 and tat - tau > now then wait = math.max(wait, tat - tau - now) end
  if wait > 0 then break end
  granted = granted + 1
  in_flight = in_flight + 1
  tat = tat + interval
  redis.call('ZADD', KEYS[2], now + lease_ms, ARGV[4] .. granted)
end
if granted > 0 then
  if rpm > 0 then redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000) end
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], math.ceil(tonumber(last[2])) + 1000)
end
return {granted, math.ceil(wait)}
)lua";

// A slot held by another replica frees without telling us: the script answers "wait" at most this
// long, so a freed slot is taken within this (and each waiting provider asks Redis ~100 times a second).
constexpr long long kSlotPollMs = 10;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

Reply command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

// "" when the reply is usable, else why not (transport error or error reply).
std::string failure(redisContext* c, const Reply& r) {
  if (!r) return c->errstr[0] ? std::string(c->errstr) : "no reply";
  if (r->type == REDIS_REPLY_ERROR) return "error reply: " + std::string(r->str, r->len);
  return "";
}

std::string key(const std::string& provider, const char* what) { return "pipelined:{" + provider + "}:" + what; }

}  // namespace

SharedLimiter::SharedLimiter(const config::SharedLimitsConfig& config) : config_(config) {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08x%08x:", rd(), rd());
  lease_prefix_ = buf;
  last_attempt_ = Clock::now();
  connect();
}

SharedLimiter::~SharedLimiter() {
  if (ctx_) redisFree(ctx_);
}

int SharedLimiter::local_share(int limit, int replicas) { return std::max(1, (limit + std::max(1, replicas) - 1) / std::max(1, replicas)); }

double SharedLimiter::local_share(double requests_per_minute, int replicas) {
  if (requests_per_minute <= 0) return 0;
  return std::max(1.0, std::ceil(requests_per_minute / std::max(1, replicas)));
}

bool SharedLimiter::connect() {
  const std::string where = config_.host + ":" + std::to_string(config_.port);
  redisContext* c = redisConnectWithTimeout(config_.host.c_str(), config_.port, to_timeval(config_.timeout));
  if (c == nullptr || c->err) {
    const std::string why = c ? c->errstr : "cannot allocate a hiredis context";
    if (c) redisFree(c);
    down("connecting to " + where + ": " + why);
    return false;
  }
  redisSetTimeout(c, to_timeval(config_.timeout));
  ctx_ = c;
  std::string why;
  if (!config_.password.empty()) {
    if (auto r = command(c, {"AUTH", config_.password}); !(why = failure(c, r)).empty()) return down("AUTH at " + where + ": " + why);
  }
  if (config_.db != 0) {
    if (auto r = command(c, {"SELECT", std::to_string(config_.db)}); !(why = failure(c, r)).empty())
      return down("SELECT " + std::to_string(config_.db) + " at " + where + ": " + why);
  }
  auto r = command(c, {"SCRIPT", "LOAD", kScript});
  if (!(why = failure(c, r)).empty()) return down("SCRIPT LOAD at " + where + ": " + why);
  if (r->type != REDIS_REPLY_STRING) return down("SCRIPT LOAD at " + where + ": unexpected reply type " + std::to_string(r->type));
  sha_.assign(r->str, r->len);
  last_answer_ = Clock::now();
  if (warned_)
    spdlog::info("shared_limits: Redis at {} is back: provider limits are shared again", where);
  else if (!ever_up_)
    spdlog::info("shared_limits: provider limits shared through Redis at {}", where);
  warned_ = false;
  ever_up_ = true;
  reason_.clear();
  return true;
}

bool SharedLimiter::down(const std::string& why) {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
  pending_releases_ = 0;
  reason_ = why;
  if (!warned_) {
    spdlog::warn("shared_limits: {}; each provider now uses 1/{} of its limits locally until Redis answers again (retried every second)",
                 why, config_.expected_replicas);
    warned_ = true;
  }
  return false;
}

void SharedLimiter::maintain(Clock::time_point now) {
  if (ctx_) {
    if (!drain_releases()) return;
    // Idle for a second: a PING, so that up() (and the stats and gauge) follow Redis without traffic.
    if (now - last_answer_ >= std::chrono::seconds(1)) {
      last_answer_ = now;
      Reply r = command(ctx_, {"PING"});
      if (const std::string why = failure(ctx_, r); !why.empty()) down("PING: " + why);
    }
    return;
  }
  if (now - last_attempt_ < std::chrono::seconds(1)) return;
  last_attempt_ = now;
  connect();
}

SharedLimiter::Decision SharedLimiter::acquire(const std::string& provider, double requests_per_minute, int max_in_flight,
                                               std::chrono::milliseconds lease_for, int wanted) {
  Decision d;
  if (!ctx_ || !drain_releases()) return d;  // the next reply read must be this call's
  char rpm[64];
  std::snprintf(rpm, sizeof rpm, "%.17g", std::max(0.0, requests_per_minute));
  const std::string lease = lease_prefix_ + std::to_string(++leases_) + ":";
  const std::vector<std::string> args = {"EVALSHA",
                                         sha_,
                                         "2",
                                         key(provider, "rate"),
                                         key(provider, "inflight"),
                                         rpm,
                                         std::to_string(std::max(1, max_in_flight)),
                                         std::to_string(std::max<long long>(1, lease_for.count()) + 1000),
                                         lease,
                                         std::to_string(kSlotPollMs),
                                         std::to_string(std::max(1, wanted))};
  Reply r = command(ctx_, args);
  if (r && r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
    // Redis restarted or SCRIPT FLUSH: load it again and retry once.
    Reply loaded = command(ctx_, {"SCRIPT", "LOAD", kScript});
    if (const std::string why = failure(ctx_, loaded); !why.empty()) {
      down("SCRIPT LOAD for provider '" + provider + "': " + why);
      return d;
    }
    if (loaded->type == REDIS_REPLY_STRING) sha_.assign(loaded->str, loaded->len);
    std::vector<std::string> again = args;
    again[1] = sha_;
    r = command(ctx_, again);
  }
  if (const std::string why = failure(ctx_, r); !why.empty()) {
    down("EVALSHA for provider '" + provider + "': " + why);
    return d;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[1]->type != REDIS_REPLY_INTEGER) {
    down("EVALSHA for provider '" + provider + "': unexpected reply shape");
    return d;
  }
  last_answer_ = Clock::now();
  const long long granted = std::clamp<long long>(r->element[0]->integer, 0, std::max(1, wanted));
  for (long long i = 1; i <= granted; ++i) d.leases.push_back(lease + std::to_string(i));
  d.kind = granted > 0 ? Decision::Kind::Granted : Decision::Kind::Wait;
  if (granted < wanted) d.retry_after = std::chrono::milliseconds(std::max<long long>(1, r->element[1]->integer));
  return d;
}

void SharedLimiter::release(const std::string& provider, const std::string& lease) {
  if (!ctx_ || lease.empty()) return;
  // Sent now, so other replicas see the slot free at once; the reply is read later (drain_releases()).
  const std::string k = key(provider, "inflight");
  const char* argv[] = {"ZREM", k.data(), lease.data()};
  const size_t lens[] = {4, k.size(), lease.size()};
  int done = 0;
  if (redisAppendCommandArgv(ctx_, 3, argv, lens) != REDIS_OK) {
    down("ZREM (release) for provider '" + provider + "': " + std::string(ctx_->errstr));
    return;
  }
  ++pending_releases_;
  while (!done)
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) {
      down("ZREM (release) for provider '" + provider + "': " + std::string(ctx_->errstr));
      return;
    }
}

bool SharedLimiter::drain_releases() {
  for (; pending_releases_ > 0; --pending_releases_) {
    void* raw = nullptr;
    const int rc = redisGetReply(ctx_, &raw);
    Reply r(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK) return down("ZREM (release): " + std::string(ctx_->errstr[0] ? ctx_->errstr : "no reply"));
    if (const std::string why = failure(ctx_, r); !why.empty()) return down("ZREM (release): " + why);
  }
  return true;
}

}  // namespace pipelined::outbound
