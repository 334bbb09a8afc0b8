#include "daemon/outbound/outbound.h"
#include "daemon/outbound/call_queue.h"
#include "daemon/outbound/shared_limiter.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <pipelined/plugin_abi.h>

#include <algorithm>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

namespace pipelined::outbound {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// libcurl's global init is not thread-safe; do it once per process.
struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

bool is_connection_error(CURLcode c) {
  return c == CURLE_COULDNT_CONNECT || c == CURLE_SEND_ERROR || c == CURLE_RECV_ERROR || c == CURLE_GOT_NOTHING ||
         c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_PARTIAL_FILE;
}

// Retry-After: delta seconds or an HTTP-date.
std::optional<milliseconds> parse_retry_after(const std::string& value) {
  if (value.empty()) return std::nullopt;
  char* end = nullptr;
  const double seconds = std::strtod(value.c_str(), &end);
  if (end != value.c_str() && *end == '\0') return milliseconds(static_cast<long long>(std::max(0.0, seconds) * 1000));
  std::tm tm{};
  if (strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(at - std::chrono::system_clock::now()));
}

// base + path with exactly one '/' between them ("…/v1" + "chat/completions"); an empty path is
// the base itself (Translation v2 posts to its base URL).
std::string join_url(const std::string& base, const std::string& path) {
  if (path.empty() || path[0] == '?') return base + path;
  const bool base_slash = !base.empty() && base.back() == '/';
  const bool path_slash = path[0] == '/';
  if (base_slash && path_slash) return base + path.substr(1);
  if (!base_slash && !path_slash) return base + "/" + path;
  return base + path;
}

}  // namespace

struct Call;

// The most calls of one provider one Redis round trip asks for (shared limits).
constexpr std::size_t kMaxSharedBatch = 64;

struct ProviderState {
  config::ProviderConfig config;
  int in_flight = 0;
  double tokens = 0;  // requests-per-minute token bucket (see capacity)
  Clock::time_point refilled = Clock::now();
  CallQueue queue;  // admitted, waiting for a slot or a token
  ProviderStats stats;
  // Shared limits: 1 while they hold (or are off); expected_replicas while Redis is unreachable, when
  // this replica keeps ceil(limit / replicas) of each limit locally.
  int replicas = 1;
  Clock::time_point shared_retry_at{};  // Redis said "retry after": the front call waits until then

  int max_in_flight() const { return SharedLimiter::local_share(config.max_in_flight, replicas); }
  double rpm() const {
    return replicas == 1 ? config.requests_per_minute : SharedLimiter::local_share(config.requests_per_minute, replicas);
  }

  // A minute's allowance, refilled continuously, as providers describe their own per-minute limits:
  // bursts up to requests_per_minute, sustained requests_per_minute per minute.
  double capacity() const { return std::max(1.0, rpm()); }
  void refill(Clock::time_point now) {
    if (rpm() <= 0) return;
    tokens = std::min(capacity(), tokens + std::chrono::duration<double>(now - refilled).count() * rpm() / 60.0);
    refilled = now;
  }
  bool can_start(Clock::time_point now) {
    if (in_flight >= max_in_flight()) return false;
    refill(now);
    return rpm() <= 0 || tokens >= 1.0;
  }
  // When a token will be there; only meaningful when the bucket is empty.
  Clock::time_point next_token() const {
    const double missing = 1.0 - tokens;
    return refilled + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(missing * 60.0 / rpm()));
  }
};

// One request through its attempts.
struct Call {
  Request request;
  std::function<void(Response)> done;
  ProviderState* provider = nullptr;
  std::uint64_t seq = 0;  // order of send(): breaks ties between calls of one request
  int attempts = 0;
  Clock::time_point not_before{};
  CURL* easy = nullptr;
  std::string lease;  // the shared in-flight slot this attempt holds in Redis ("" when none)
  curl_slist* headers = nullptr;
  std::string body_in;
  std::string retry_after;
  char error[CURL_ERROR_SIZE] = {};
};

struct OutboundClient::Impl {
  CURLM* multi = nullptr;
  std::thread io;
  mutable std::mutex mu;  // incoming, stopping, providers' stats and configs
  std::deque<Call*> incoming;
  std::uint64_t sent = 0;  // calls sent so far, the next call's seq
  bool stopping = false;
  std::optional<std::map<std::string, config::ProviderConfig>> pending_providers;
  std::set<Call*> active;  // started and not completed (I/O thread only)
  std::map<std::string, std::unique_ptr<ProviderState>> providers;
  ProviderState unlimited;  // absolute URLs: no provider limits
  std::vector<CURL*> idle_easy;
  std::multimap<Clock::time_point, Call*> backoff;  // retries waiting for their time
  std::mt19937_64 rng{std::random_device{}()};
  int running = 0;
  std::unique_ptr<SharedLimiter> limiter;  // null: shared_limits off
  bool shared_up = false;                  // the limiter's state providers were last told of

  explicit Impl(const config::SharedLimitsConfig& shared) {
    static CurlGlobal global;
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 64L);
    unlimited.config.max_in_flight = 1 << 20;
    unlimited.config.name = "";
    if (shared.enabled()) {
      limiter = std::make_unique<SharedLimiter>(shared);
      shared_up = !limiter->up();  // so that sync_shared_mode() sets every provider
    }
  }

  ~Impl() {
    for (CURL* e : idle_easy) curl_easy_cleanup(e);
    curl_multi_cleanup(multi);
  }

  void set_providers(const std::map<std::string, config::ProviderConfig>& configs) {
    for (const auto& [name, cfg] : configs) {
      auto& p = providers[name];
      if (!p) {
        p = std::make_unique<ProviderState>();
        p->tokens = std::max(1.0, cfg.requests_per_minute);
      }
      p->config = cfg;
      p->queue.set_order(cfg.queue_order);
    }
    if (limiter) {
      shared_up = !limiter->up();
      sync_shared_mode();
    }
  }

  // After the limiter went down or came back: each provider's local limits and stats follow.
  void sync_shared_mode() {
    if (!limiter || limiter->up() == shared_up) return;
    shared_up = limiter->up();
    std::lock_guard lock(mu);
    for (auto& [name, p] : providers) {
      p->replicas = shared_up ? 1 : limiter->expected_replicas();
      p->tokens = std::min(p->tokens, p->capacity());
      p->shared_retry_at = {};
      p->stats.shared_limit = shared_up ? "redis" : "local share";
      p->stats.shared_limit_reason = shared_up ? ""
                                               : "Redis unreachable (" + limiter->reason() + "): limits / " +
                                                     std::to_string(limiter->expected_replicas()) + " locally";
    }
  }

  // How long an attempt started now may take: its curl timeout (start()).
  static milliseconds attempt_timeout(const Call& call, Clock::time_point now) {
    const Request& r = call.request;
    const milliseconds attempt = r.timeout.count() > 0 ? r.timeout : call.provider->config.timeout;
    const auto left = std::chrono::duration_cast<milliseconds>(r.deadline - now);
    return milliseconds(std::max<long long>(1, std::min(attempt.count(), left.count())));
  }

  static void finish(Call* call, Response response) {
    auto done = std::move(call->done);
    response.attempts = call->attempts;
    delete call;
    done(std::move(response));
  }

  void fail(Call* call, const std::string& error_class, const std::string& message, int status = 0) {
    Response r;
    r.status = status;
    r.error_class = error_class;
    r.error = message;
    {
      std::lock_guard lock(mu);
      ++call->provider->stats.failures;
    }
    finish(call, std::move(r));
  }

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    static_cast<Call*>(user)->body_in.append(data, size * n);
    return size * n;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* user) {
    std::string_view line(data, size * n);
    constexpr std::string_view kName = "retry-after:";
    if (line.size() > kName.size() && strncasecmp(line.data(), kName.data(), kName.size()) == 0) {
      std::string value(line.substr(kName.size()));
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t\r\n") + 1);
      static_cast<Call*>(user)->retry_after = value;
    }
    return size * n;
  }

  void start(Call* call, Clock::time_point now) {
    const config::ProviderConfig& p = call->provider->config;
    const Request& r = call->request;
    std::string url = r.provider.empty() ? r.path : join_url(p.base_url, r.path);
    call->easy = idle_easy.empty() ? curl_easy_init() : idle_easy.back();
    if (!idle_easy.empty()) idle_easy.pop_back();
    CURL* e = call->easy;
    curl_easy_reset(e);
    for (const auto& [k, v] : r.headers) call->headers = curl_slist_append(call->headers, (k + ": " + v).c_str());
    if (!p.api_key.empty() && !r.provider.empty()) {
      if (p.auth_header == "key") {
        char* escaped = curl_easy_escape(e, p.api_key.c_str(), static_cast<int>(p.api_key.size()));
        url += (url.find('?') == std::string::npos ? "?key=" : "&key=") + std::string(escaped);
        curl_free(escaped);
      } else if (strcasecmp(p.auth_header.c_str(), "Authorization") == 0) {
        call->headers = curl_slist_append(call->headers, ("Authorization: Bearer " + p.api_key).c_str());
      } else {
        call->headers = curl_slist_append(call->headers, (p.auth_header + ": " + p.api_key).c_str());
      }
    }
    if (!r.body.empty()) call->headers = curl_slist_append(call->headers, "Content-Type: application/json");
    call->headers = curl_slist_append(call->headers, "Expect:");  // no 100-continue round trip
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (r.method == "POST" || !r.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(attempt_timeout(*call, now).count()));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    call->body_in.clear();
    call->retry_after.clear();
    call->error[0] = '\0';
    ++call->attempts;
    ProviderState& ps = *call->provider;
    {
      std::lock_guard lock(mu);
      if (ps.rpm() > 0) ps.tokens -= 1.0;
      ++ps.in_flight;
      ++ps.stats.requests;
      ps.stats.in_flight = ps.in_flight;
      ps.stats.peak_in_flight = std::max(ps.stats.peak_in_flight, ps.in_flight);
      if (call->attempts > 1) ++ps.stats.retries;
    }
    curl_multi_add_handle(multi, e);
    active.insert(call);
    ++running;
  }

  void release_handle(Call* call) {
    active.erase(call);
    curl_multi_remove_handle(multi, call->easy);
    idle_easy.push_back(call->easy);
    call->easy = nullptr;
    curl_slist_free_all(call->headers);
    call->headers = nullptr;
    --running;
    if (!call->lease.empty()) {
      limiter->release(call->provider->config.name, call->lease);
      call->lease.clear();
      sync_shared_mode();
    }
    std::lock_guard lock(mu);
    --call->provider->in_flight;
    call->provider->stats.in_flight = call->provider->in_flight;
  }

  // Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))].
  milliseconds backoff_for(const Call& call) {
    const auto& p = call.provider->config;
    const long long cap = std::min<long long>(p.backoff_max.count(), p.backoff_base.count() << std::min(call.attempts - 1, 20));
    return milliseconds(std::uniform_int_distribution<long long>(0, std::max(0LL, cap))(rng));
  }

  void completed(Call* call, CURLcode code) {
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    const std::string transport_error = call->error[0] ? call->error : curl_easy_strerror(code);
    release_handle(call);
    const auto now = Clock::now();
    if (code == CURLE_OK && status >= 200 && status < 300) {
      Response r;
      r.status = static_cast<int>(status);
      r.body = std::move(call->body_in);
      return finish(call, std::move(r));
    }
    const bool timed_out = code == CURLE_OPERATION_TIMEDOUT;
    const bool retryable = timed_out || is_connection_error(code) || (code == CURLE_OK && (status >= 500 || status == 429));
    if (code == CURLE_OK && status >= 400 && !retryable) {
      Response r;
      r.status = static_cast<int>(status);
      r.body = std::move(call->body_in);
      r.error_class = PL_ERR_UPSTREAM;
      r.error = "HTTP " + std::to_string(status);
      {
        std::lock_guard lock(mu);
        ++call->provider->stats.failures;
      }
      return finish(call, std::move(r));
    }
    const std::string error_class = status == 429 ? PL_ERR_RATE_LIMITED : timed_out ? PL_ERR_TIMEOUT : PL_ERR_UPSTREAM;
    const std::string message = code != CURLE_OK ? transport_error : "HTTP " + std::to_string(status);
    if (status == 429) {
      std::lock_guard lock(mu);
      ++call->provider->stats.rate_limited;
    }
    if (!retryable || call->attempts > call->provider->config.max_retries)
      return fail(call, error_class, message + " after " + std::to_string(call->attempts) + " attempts", static_cast<int>(status));
    milliseconds wait = backoff_for(*call);
    if (status == 429)
      if (auto ra = parse_retry_after(call->retry_after)) wait = std::max(wait, *ra);
    if (now + wait >= call->request.deadline)
      return fail(call, PL_ERR_TIMEOUT, message + "; the next attempt would pass the request deadline", static_cast<int>(status));
    call->not_before = now + wait;
    backoff.emplace(call->not_before, call);
  }

  void admit(Call* call) {
    if (call->request.provider.empty()) {
      call->provider = &unlimited;
    } else {
      auto it = providers.find(call->request.provider);
      if (it == providers.end()) {
        call->provider = &unlimited;
        return fail(call, PL_ERR_INTERNAL, "unknown provider '" + call->request.provider + "'");
      }
      call->provider = it->second.get();
    }
    enqueue(call);
  }

  void enqueue(Call* call) { call->provider->queue.push(call, call->request.request_arrived, call->seq, call->request.deadline); }

  // Starts what the limits allow; returns when the loop should look again at the latest.
  Clock::time_point dispatch(Clock::time_point now) {
    Clock::time_point next = now + milliseconds(200);
    while (!backoff.empty() && backoff.begin()->first <= now) {
      Call* c = backoff.begin()->second;
      backoff.erase(backoff.begin());
      enqueue(c);  // a retry keeps its place: same request age, same seq
    }
    if (!backoff.empty()) next = std::min(next, backoff.begin()->first);
    if (limiter) {
      limiter->maintain(now);
      sync_shared_mode();
    }
    auto serve = [&](ProviderState& p) {
      for (Call* c : p.queue.pop_expired(now))
        fail(c, PL_ERR_TIMEOUT, "request deadline passed while queued for provider '" + c->request.provider + "'");
      while (!p.queue.empty()) {
        if (!p.can_start(now)) {
          if (p.in_flight < p.max_in_flight()) next = std::min(next, p.next_token());
          break;
        }
        if (!limiter || !limiter->up() || &p == &unlimited) {
          start(p.queue.pop_front(), now);
          continue;
        }
        // The local limits allow it: ask Redis for the replicas' shared ones, for as many of the
        // first calls as the local limits allow now (one round trip). A "retry after" keeps the rest
        // in their places until then; Redis failing turns the limiter down, and the loop goes round
        // again on the local share.
        if (now < p.shared_retry_at) {
          next = std::min(next, p.shared_retry_at);
          break;
        }
        std::size_t room = static_cast<std::size_t>(p.max_in_flight() - p.in_flight);
        if (p.rpm() > 0) room = std::min(room, static_cast<std::size_t>(p.tokens));
        const std::vector<Call*> batch = p.queue.first(std::clamp<std::size_t>(room, 1, kMaxSharedBatch));
        milliseconds lease_for{1};
        for (const Call* c : batch) lease_for = std::max(lease_for, attempt_timeout(*c, now));
        auto d = limiter->acquire(p.config.name, p.config.requests_per_minute, p.config.max_in_flight, lease_for,
                                  static_cast<int>(batch.size()));
        if (d.kind == SharedLimiter::Decision::Kind::Unavailable) {
          sync_shared_mode();
          continue;
        }
        for (std::string& lease : d.leases) {
          Call* c = p.queue.pop_front();
          c->lease = std::move(lease);
          start(c, now);
        }
        if (d.leases.size() < batch.size()) {
          p.shared_retry_at = now + d.retry_after;
          next = std::min(next, p.shared_retry_at);
          std::lock_guard lock(mu);
          ++p.stats.shared_waits;
          break;
        }
      }
      next = std::min(next, p.queue.earliest_deadline());
    };
    for (auto& [name, p] : providers) serve(*p);
    serve(unlimited);
    return next;
  }

  void loop() {
    for (;;) {
      std::deque<Call*> arrived;
      bool stop = false;
      {
        std::lock_guard lock(mu);
        arrived.swap(incoming);
        stop = stopping;
        if (pending_providers) {
          set_providers(*pending_providers);
          pending_providers.reset();
        }
      }
      for (Call* c : arrived) admit(c);
      if (stop) break;
      const auto next = dispatch(Clock::now());
      int still = 0;
      curl_multi_perform(multi, &still);
      while (CURLMsg* msg = curl_multi_info_read(multi, &still)) {
        if (msg->msg != CURLMSG_DONE) continue;
        Call* call = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &call);
        completed(call, msg->data.result);
      }
      const auto wait = std::chrono::duration_cast<milliseconds>(next - Clock::now()).count();
      curl_multi_poll(multi, nullptr, 0, static_cast<int>(std::clamp<long long>(wait, 0, 200)), nullptr);
    }
    // Shutting down: everything not finished fails, each exactly once.
    std::vector<Call*> left;
    for (auto& [t, c] : backoff) left.push_back(c);
    backoff.clear();
    for (auto* p : all_providers())
      for (Call* c : p->queue.take_all()) left.push_back(c);
    for (Call* call : std::vector<Call*>(active.begin(), active.end())) {
      release_handle(call);
      left.push_back(call);
    }
    for (Call* c : left) fail(c, PL_ERR_INTERNAL, "outbound client shutting down");
  }

  std::vector<ProviderState*> all_providers() {
    std::vector<ProviderState*> out{&unlimited};
    for (auto& [n, p] : providers) out.push_back(p.get());
    return out;
  }
};

OutboundClient::OutboundClient(const std::map<std::string, config::ProviderConfig>& providers, const config::SharedLimitsConfig& shared)
    : impl_(std::make_unique<Impl>(shared)) {
  impl_->set_providers(providers);
  impl_->io = std::thread([this] { impl_->loop(); });
}

OutboundClient::~OutboundClient() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  curl_multi_wakeup(impl_->multi);
  impl_->io.join();
}

void OutboundClient::send(Request request, std::function<void(Response)> done) {
  auto* call = new Call{std::move(request), std::move(done)};
  {
    std::unique_lock lock(impl_->mu);
    if (impl_->stopping) {
      lock.unlock();
      Response r;
      r.error_class = PL_ERR_INTERNAL;
      r.error = "outbound client shutting down";
      auto d = std::move(call->done);
      delete call;
      d(std::move(r));
      return;
    }
    if (call->request.request_arrived == Clock::time_point{}) call->request.request_arrived = Clock::now();
    call->seq = impl_->sent++;
    impl_->incoming.push_back(call);
  }
  curl_multi_wakeup(impl_->multi);
}

void OutboundClient::update_providers(const std::map<std::string, config::ProviderConfig>& providers) {
  // Applied by the I/O thread on its next turn; calls already started keep their settings.
  {
    std::lock_guard lock(impl_->mu);
    impl_->pending_providers = providers;
  }
  curl_multi_wakeup(impl_->multi);
}

std::map<std::string, ProviderStats> OutboundClient::stats() const {
  std::lock_guard lock(impl_->mu);
  std::map<std::string, ProviderStats> out;
  for (const auto& [name, p] : impl_->providers) out[name] = p->stats;
  return out;
}

}  // namespace pipelined::outbound
