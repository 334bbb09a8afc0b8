// pipelined plugin SDK: the only header a stage plugin author includes.
//
//   class Ocr : public pipelined::sdk::Stage {
//    public:
//     explicit Ocr(const nlohmann::json& config);
//     pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override;
//   };
//   PIPELINED_PLUGIN(Ocr, "menu_ocr_tesseract", "1.0.0", "ocr", "serial")
//
// Header-only sugar over plugin_abi.h. Exceptions never cross the boundary: anything thrown from the
// constructor or run() becomes an error result (StageError keeps its class, others are "internal").
#pragma once

#include <pipelined/plugin_abi.h>

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipelined::sdk {

struct Attachment {
  std::string name;
  std::string content_type;
  // Shared so that passing an image along does not copy it.
  std::shared_ptr<const std::string> data;
};

struct Payload {
  nlohmann::json json = nlohmann::json::object();
  std::vector<Attachment> attachments;

  const Attachment* attachment(std::string_view name) const {
    for (const auto& a : attachments)
      if (a.name == name) return &a;
    return nullptr;
  }
};

// Thrown by a stage to fail with a specific error class (see PL_ERR_* in plugin_abi.h).
class StageError : public std::runtime_error {
 public:
  StageError(std::string error_class, const std::string& message)
      : std::runtime_error(message), error_class_(std::move(error_class)) {}
  const std::string& error_class() const { return error_class_; }

 private:
  std::string error_class_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string error_class;  // empty on success
  std::string error;
  int attempts = 0;
  bool ok() const { return error_class.empty() && status >= 200 && status < 300; }
};

struct HttpRequest {
  std::string provider;  // provider name from daemon config; empty: `path` is an absolute URL
  std::string method = "POST";
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::int64_t timeout_ms = 0;
};

namespace detail {

inline Payload from_c(const pl_payload& p) {
  Payload out;
  if (p.json != nullptr && p.json_size > 0) out.json = nlohmann::json::parse(p.json, p.json + p.json_size);
  out.attachments.reserve(p.attachment_count);
  for (size_t i = 0; i < p.attachment_count; ++i) {
    const pl_attachment& a = p.attachments[i];
    out.attachments.push_back(
        {a.name ? a.name : "", a.content_type ? a.content_type : "",
         std::make_shared<const std::string>(reinterpret_cast<const char*>(a.data), a.size)});
  }
  return out;
}

// Keeps the serialized JSON and the C attachment array alive while the host reads them.
struct CPayload {
  std::string json;
  std::vector<pl_attachment> attachments;
  pl_payload view{};

  explicit CPayload(const Payload& p) : json(p.json.dump()) {
    attachments.reserve(p.attachments.size());
    for (const auto& a : p.attachments)
      attachments.push_back({a.name.c_str(), a.content_type.c_str(),
                             a.data ? reinterpret_cast<const uint8_t*>(a.data->data()) : nullptr,
                             a.data ? a.data->size() : 0});
    view = {json.data(), json.size(), attachments.data(), attachments.size()};
  }
};

}  // namespace detail

// One stage run of one request: deadline, cancellation, streaming, the worker pool, outbound HTTP.
class Context {
 public:
  Context(const pl_host_services* host, pl_run_context* ctx) : host_(host), ctx_(ctx) {}

  void log(pl_log_level level, const std::string& message) const { host_->log(ctx_, level, message.c_str()); }
  std::int64_t remaining_ms() const { return host_->remaining_ms(ctx_); }
  bool cancelled() const { return host_->is_cancelled(ctx_) != 0; }
  void throw_if_cancelled() const {
    if (cancelled()) throw StageError(PL_ERR_TIMEOUT, "request cancelled or past its deadline");
  }

  // Hands one item to downstream stages that consume this stage as a stream.
  void emit(const Payload& item) const {
    detail::CPayload c(item);
    host_->emit_item(ctx_, &c.view);
  }

  // Next item of the upstream stream; false at the end of the stream. Throws when cancelled.
  bool next_item(Payload& item) const {
    pl_payload p{};
    int rc = host_->next_item(ctx_, &p);
    if (rc == PL_END) return false;
    if (rc != PL_OK) throw StageError(PL_ERR_TIMEOUT, "request cancelled while waiting for input items");
    item = detail::from_c(p);
    return true;
  }

  // Runs fn(0..n-1) on the shared worker pool and waits; the first exception is rethrown here.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn) const {
    struct Task {
      const std::function<void(size_t)>* fn;
      size_t index;
      std::exception_ptr* error;
      std::mutex* mu;
    };
    std::exception_ptr error;
    std::mutex mu;
    std::vector<Task> tasks(n);
    pl_task_group* group = host_->group_create(ctx_);
    for (size_t i = 0; i < n; ++i) {
      tasks[i] = {&fn, i, &error, &mu};
      auto trampoline = [](void* arg) {
        auto* t = static_cast<Task*>(arg);
        try {
          (*t->fn)(t->index);
        } catch (...) {
          std::lock_guard<std::mutex> lock(*t->mu);
          if (!*t->error) *t->error = std::current_exception();
        }
      };
      if (host_->group_submit(group, trampoline, &tasks[i]) != PL_OK) trampoline(&tasks[i]);
    }
    host_->group_wait(group);
    host_->group_destroy(group);
    if (error) std::rethrow_exception(error);
  }

  // Starts an HTTP request through the host's client; the future is ready when it completes.
  // Waiting on several futures keeps one thread parked, not one per request.
  std::future<HttpResponse> http(const HttpRequest& request) const {
    auto promise = std::make_unique<std::promise<HttpResponse>>();
    auto future = promise->get_future();
    std::vector<pl_http_header> headers;
    headers.reserve(request.headers.size());
    for (const auto& [k, v] : request.headers) headers.push_back({k.c_str(), v.c_str()});
    pl_http_request req{request.provider.empty() ? nullptr : request.provider.c_str(),
                        request.method.c_str(),
                        request.path.c_str(),
                        headers.data(),
                        headers.size(),
                        request.body.data(),
                        request.body.size(),
                        request.timeout_ms};
    auto callback = [](void* user, const pl_http_response* r) {
      std::unique_ptr<std::promise<HttpResponse>> p(static_cast<std::promise<HttpResponse>*>(user));
      HttpResponse out;
      out.status = r->status;
      if (r->body) out.body.assign(r->body, r->body_size);
      if (r->error_class) out.error_class = r->error_class;
      if (r->error) out.error = r->error;
      out.attempts = r->attempts;
      p->set_value(std::move(out));
    };
    if (host_->http_send(ctx_, &req, callback, promise.get()) == PL_OK) {
      promise.release();  // owned by the callback now
    } else {
      HttpResponse out;
      out.error_class = PL_ERR_INTERNAL;
      out.error = "no outbound HTTP client is configured in this daemon";
      promise->set_value(std::move(out));
    }
    return future;
  }

  // http() and wait; throws StageError with the response's class when it did not succeed.
  HttpResponse http_ok(const HttpRequest& request) const {
    HttpResponse r = http(request).get();
    if (!r.ok()) {
      std::string cls = r.error_class.empty() ? PL_ERR_UPSTREAM : r.error_class;
      throw StageError(cls, request.path + ": " + (r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error));
    }
    return r;
  }

  const pl_host_services* host() const { return host_; }
  pl_run_context* raw() const { return ctx_; }

 private:
  const pl_host_services* host_;
  pl_run_context* ctx_;
};

// Base class of a stage implementation. One instance serves concurrent runs: keep run() free of
// unsynchronised mutable state.
class Stage {
 public:
  virtual ~Stage() = default;
  virtual Payload run(const Payload& input, Context& ctx) = 0;
};

namespace detail {

struct Instance {
  std::unique_ptr<Stage> stage;
  const pl_host_services* host;
};

inline void copy_message(pl_error* err, const char* message) {
  if (err == nullptr) return;
  std::strncpy(err->message, message, sizeof(err->message) - 1);
  err->message[sizeof(err->message) - 1] = '\0';
}

template <class StageT>
void* create(const char* config_json, size_t config_size, const pl_host_services* host, pl_error* err) noexcept {
  try {
    nlohmann::json config = config_size > 0 ? nlohmann::json::parse(config_json, config_json + config_size)
                                            : nlohmann::json::object();
    return new Instance{std::make_unique<StageT>(config), host};
  } catch (const std::exception& e) {
    copy_message(err, e.what());
  } catch (...) {
    copy_message(err, "unknown exception in plugin constructor");
  }
  return nullptr;
}

inline int run(void* instance, pl_run_context* ctx, const pl_payload* input) noexcept {
  auto* self = static_cast<Instance*>(instance);
  try {
    Context context(self->host, ctx);
    Payload in = from_c(*input);
    Payload out = self->stage->run(in, context);
    CPayload c(out);
    return self->host->set_output(ctx, &c.view);
  } catch (const StageError& e) {
    self->host->set_error(ctx, e.error_class().c_str(), e.what());
  } catch (const nlohmann::json::exception& e) {
    self->host->set_error(ctx, PL_ERR_INVALID_INPUT, e.what());
  } catch (const std::exception& e) {
    self->host->set_error(ctx, PL_ERR_INTERNAL, e.what());
  } catch (...) {
    self->host->set_error(ctx, PL_ERR_INTERNAL, "unknown exception in plugin");
  }
  return PL_ERROR;
}

inline void destroy(void* instance) noexcept { delete static_cast<Instance*>(instance); }

}  // namespace detail
}  // namespace pipelined::sdk

// Exports the plugin's entry symbol for StageT. Use once per plugin library.
#define PIPELINED_PLUGIN(StageT, NAME, VERSION, STAGE, VARIANT)                                      \
  extern "C" __attribute__((visibility("default"))) const pl_plugin_descriptor* pipelined_plugin_entry( \
      void) {                                                                                        \
    static const pl_plugin_descriptor descriptor = {                                                 \
        PL_ABI_VERSION,                                                                              \
        sizeof(pl_plugin_descriptor),                                                                \
        NAME,                                                                                        \
        VERSION,                                                                                     \
        STAGE,                                                                                       \
        VARIANT,                                                                                     \
        &::pipelined::sdk::detail::create<StageT>,                                                   \
        &::pipelined::sdk::detail::run,                                                              \
        &::pipelined::sdk::detail::destroy};                                                         \
    return &descriptor;                                                                              \
  }
