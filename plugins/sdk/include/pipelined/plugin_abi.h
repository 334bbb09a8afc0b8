/* pipelined stage plugin ABI.
 *
 * A stage plugin is a shared library that exports one C function, PL_ENTRY_SYMBOL, returning a
 * descriptor. Only C types cross this boundary; every pointer handed to the plugin is valid only for
 * the duration of the call that received it unless stated otherwise. The host checks
 * descriptor->abi_version before reading anything else, so fields may only be appended after it in
 * later ABI versions.
 *
 * Plugin authors normally do not include this file directly: plugins/sdk's pipelined/sdk.hpp wraps it.
 */
#ifndef PIPELINED_PLUGIN_ABI_H
#define PIPELINED_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PL_ABI_VERSION 1u
#define PL_ENTRY_SYMBOL "pipelined_plugin_entry"

/* Return codes of run() and of host services. */
#define PL_OK 0
#define PL_ERROR 1       /* the stage failed; details were given through host->set_error */
#define PL_END 2         /* next_item: the input stream is finished */
#define PL_CANCELLED 3   /* the request was cancelled or its deadline passed */
#define PL_FULL 4        /* submit refused: pool queue is full */
#define PL_PENDING 5     /* run: the stage goes on asynchronously and ends with host->complete;
                          * poll_item: nothing yet, wake() will be called */

/* Error classes a plugin reports through set_error. Free text is allowed; these are the ones the
 * rollout guardrails and reports group by. */
#define PL_ERR_INVALID_INPUT "invalid_input"
#define PL_ERR_UPSTREAM "upstream"         /* provider answered with an error status */
#define PL_ERR_TIMEOUT "timeout"           /* provider or deadline timeout */
#define PL_ERR_RATE_LIMITED "rate_limited" /* provider 429 after retries */
#define PL_ERR_MALFORMED "malformed"       /* provider answered with a body we could not parse */
#define PL_ERR_INTERNAL "internal"         /* bug or exception inside the plugin */

enum pl_log_level { PL_LOG_DEBUG = 0, PL_LOG_INFO = 1, PL_LOG_WARN = 2, PL_LOG_ERROR = 3 };

/* Binary data that travels beside the JSON payload (images), never base64 inside the daemon. */
typedef struct pl_attachment {
  const char* name;         /* NUL-terminated, e.g. "image" or "menu.jpg" */
  const char* content_type; /* NUL-terminated, e.g. "image/png" */
  const uint8_t* data;
  size_t size;
} pl_attachment;

/* What flows between stages: one JSON document plus attachments. */
typedef struct pl_payload {
  const char* json; /* UTF-8 JSON text, not necessarily NUL-terminated */
  size_t json_size;
  const pl_attachment* attachments;
  size_t attachment_count;
} pl_payload;

/* Opaque handles owned by the host. */
typedef struct pl_run_context pl_run_context; /* one stage run of one request */
typedef struct pl_task_group pl_task_group;   /* tasks submitted to the shared worker pool */

/* Outbound HTTP through a named provider of the daemon config (base URL, key, limits, retries
 * are applied by the host). Asynchronous: the callback runs on the host's I/O thread, so it must
 * be short and must not block. */
typedef struct pl_http_header {
  const char* name;
  const char* value;
} pl_http_header;

typedef struct pl_http_request {
  const char* provider; /* provider name from config; NULL means `url` is absolute */
  const char* method;   /* "GET", "POST" */
  const char* path;     /* appended to the provider's base URL, or absolute URL */
  const pl_http_header* headers;
  size_t header_count;
  const char* body;
  size_t body_size;
  int64_t timeout_ms; /* per attempt; 0 = provider default */
} pl_http_request;

typedef struct pl_http_response {
  int status;          /* HTTP status, 0 when no response was received */
  const char* body;
  size_t body_size;
  const char* error_class; /* NULL on success, else one of PL_ERR_* */
  const char* error;       /* human-readable transport or limit error, NULL on success */
  int attempts;
} pl_http_response;

typedef void (*pl_http_callback)(void* user, const pl_http_response* response);

/* Services the host gives a plugin. Valid from create() until destroy(). */
typedef struct pl_host_services {
  uint32_t struct_size; /* sizeof(pl_host_services) of the host; fields past it are absent */

  void (*log)(pl_run_context* ctx, int level, const char* message); /* ctx may be NULL */

  /* Milliseconds left before the request's deadline (may be <= 0). */
  int64_t (*remaining_ms)(pl_run_context* ctx);
  /* Nonzero when the request was cancelled or its deadline passed: stop early. */
  int (*is_cancelled)(pl_run_context* ctx);

  /* Result of this stage run. set_output copies the payload; the last call wins. */
  int (*set_output)(pl_run_context* ctx, const pl_payload* output);
  /* Record why run() is about to return PL_ERROR. Copies both strings. */
  void (*set_error)(pl_run_context* ctx, const char* error_class, const char* message);

  /* Streaming. emit_item hands one item to the stages that consume this stage as a stream; the host
   * copies it. next_item blocks until the upstream stage emits its next item (PL_OK, *item valid until
   * the next call to next_item), the stream ends (PL_END), or the request is cancelled (PL_CANCELLED).
   * next_item is for stages configured with `input: stream`. */
  int (*emit_item)(pl_run_context* ctx, const pl_payload* item);
  int (*next_item)(pl_run_context* ctx, pl_payload* item);

  /* The daemon's shared worker pool. A group collects tasks of one stage run; group_wait runs the
   * group's queued tasks on the calling thread while it waits, so waiting never starves the pool.
   * Memory allocated inside a task is attributed to the request of `ctx`. */
  pl_task_group* (*group_create)(pl_run_context* ctx);
  int (*group_submit)(pl_task_group* group, void (*fn)(void* arg), void* arg);
  void (*group_wait)(pl_task_group* group);
  void (*group_destroy)(pl_task_group* group); /* waits first if tasks are still pending */

  /* Outbound HTTP; returns PL_OK when the request was queued (the callback will run exactly once),
   * or PL_ERROR when no HTTP client is configured (the callback will not run). */
  int (*http_send)(pl_run_context* ctx, const pl_http_request* request, pl_http_callback callback,
                   void* user);

  /* Asynchronous runs: a stage that waits on the network returns from run() instead of parking a
   * pool thread. Present when the host's struct_size covers them; a plugin that needs them
   * fails create() on an older host.
   *
   * run() returns PL_PENDING to say it goes on after returning; it then calls complete(ctx, PL_OK
   * after set_output, or PL_ERROR after set_error) exactly once, from any thread. ctx and the other
   * services stay usable until complete returns, also when the host has stopped waiting for the run
   * (deadline or cancellation: is_cancelled says so and the run should end soon). */
  void (*complete)(pl_run_context* ctx, int status);
  /* Runs fn(arg) on the worker pool, charged to the run's memory account: where a callback from
   * the I/O thread or from wake hands its work. */
  int (*post)(pl_run_context* ctx, void (*fn)(void* arg), void* arg);
  /* next_item without blocking: PL_OK (*item valid until the next call), PL_END, PL_CANCELLED, or
   * PL_PENDING: nothing yet, and wake(user) will be called once, on another thread, when the stream
   * has changed (an item, its end, or the run's cancellation); poll again then. */
  int (*poll_item)(pl_run_context* ctx, pl_payload* item, void (*wake)(void* user), void* user);
} pl_host_services;

typedef struct pl_error {
  char message[512]; /* set by create() on failure */
} pl_error;

typedef struct pl_plugin_descriptor {
  uint32_t abi_version; /* PL_ABI_VERSION the plugin was built against; checked first */
  uint32_t struct_size; /* sizeof(pl_plugin_descriptor) of the plugin */
  const char* name;     /* plugin name, e.g. "menu_ocr_tesseract" */
  const char* version;  /* plugin version, e.g. "1.4.0" */
  const char* stage;    /* stage it implements, e.g. "ocr" */
  const char* variant;  /* "serial", "parallel", ... */

  /* Create an instance from its JSON config (the variant's `config:` block of the daemon config).
   * Returns NULL and fills err on failure. An instance serves concurrent run() calls. */
  void* (*create)(const char* config_json, size_t config_size, const pl_host_services* host,
                  pl_error* err);
  /* Run the stage for one request. Returns PL_OK after set_output, or PL_ERROR after set_error. */
  int (*run)(void* instance, pl_run_context* ctx, const pl_payload* input);
  void (*destroy)(void* instance);
} pl_plugin_descriptor;

typedef const pl_plugin_descriptor* (*pl_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PIPELINED_PLUGIN_ABI_H */
