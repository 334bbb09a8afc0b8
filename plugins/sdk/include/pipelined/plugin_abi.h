/* pipelined stage plugin ABI (reference).
 *
 * A stage plugin is a shared library that exports one C function, PL_ENTRY_SYMBOL, returning a
 * descriptor. Only C types cross this boundary, and no C++ exception may cross it in either
 * direction. Plugin authors normally do not include this file directly: plugins/sdk's
 * pipelined/sdk.hpp wraps it.
 *
 * Lifecycle
 *   1. Load. The host opens the library (a private copy of the file), calls the entry function once
 *      and checks the descriptor: abi_version first, then struct_size, the fields, and
 *      required_services against the services it provides. A plugin that fails a check is refused
 *      at load time and none of its functions is called.
 *   2. Create. For every configured variant that names the plugin, the host calls create() once,
 *      on the thread that loads the configuration, with the variant's config. Several instances of
 *      one library may exist at once (one per variant, and across configuration reloads).
 *   3. Run. Each request calls run() on the instance of the variant it uses, on a worker pool
 *      thread. Runs of one instance are concurrent, so an instance must be safe for concurrent
 *      run() calls. A run ends when run() returns PL_RUN_OK or PL_RUN_ERROR, or, after it returned
 *      PL_RUN_PENDING, when the plugin calls complete().
 *   4. Destroy. A configuration reload builds a new set of instances beside the old one; requests
 *      in flight keep the old set. The host calls destroy() on an old instance after the set's last
 *      request has let go of it, on whatever thread released it last, and unloads the library
 *      after the last instance made from it was destroyed.
 *
 * Pointers and lifetimes
 *   Every pointer the host hands to the plugin (strings, payloads, requests, responses) is owned by
 *   the host and valid only during the call that received it, unless stated otherwise below. The
 *   plugin copies what it keeps. Every pointer the plugin hands to the host is read during the call
 *   only (the host copies what it keeps), except the `user`/`arg` pointers of callbacks, which the
 *   host passes back unchanged and never dereferences. The descriptor and the strings it points to
 *   are the plugin's and must stay valid until the library is unloaded.
 *
 * Threads
 *   Host services may be called from any thread, including threads the plugin starts and the
 *   callbacks the host runs, as long as the pl_run_context they name is valid (see run()). Plugin
 *   code runs on the calling thread of a service only where stated: group_wait runs the group's
 *   queued tasks while it waits, and emit_item may call the wake() of a downstream poll_item.
 *
 * Versions
 *   The host checks descriptor->abi_version before reading anything else, so fields are only ever
 *   appended, to pl_plugin_descriptor and to pl_host_services, in later releases of ABI version 1;
 *   each side tells the other how much it has with struct_size.
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

/* Status of run(), and the status a plugin passes to complete(). */
typedef enum pl_run_status {
  PL_RUN_OK = 0,     /* the stage succeeded; set_output was called */
  PL_RUN_ERROR = 1,  /* the stage failed; set_error gave the details */
  PL_RUN_PENDING = 5 /* run() only: the run goes on after returning and ends with complete() */
} pl_run_status;

/* Status of next_item() and poll_item(). */
typedef enum pl_item_status {
  PL_ITEM_OK = 0,        /* *item holds the next item */
  PL_ITEM_END = 2,       /* the stream has ended (or the stage has no stream input) */
  PL_ITEM_CANCELLED = 3, /* the run was cancelled, its deadline passed, or the host stopped waiting */
  PL_ITEM_PENDING = 5    /* poll_item only: nothing yet; wake() will be called */
} pl_item_status;

/* Status of the other host services. ABI 1 plugins used these for run() and for the item services
 * too; the values are the same, so both spellings keep working. */
#define PL_OK 0
#define PL_ERROR 1      /* the call failed */
#define PL_END 2        /* = PL_ITEM_END */
#define PL_CANCELLED 3  /* emit_item: the run was abandoned; = PL_ITEM_CANCELLED */
#define PL_FULL 4       /* group_submit: the pool queue is full; run the task yourself */
#define PL_PENDING 5    /* = PL_RUN_PENDING for run(), PL_ITEM_PENDING for poll_item */

/* Groups of host services a plugin may require (pl_plugin_descriptor.required_services). The
 * services of ABI 1's first release (log .. http_send) are always present and have no bit. */
#define PL_SERVICES_ASYNC_RUNS (1u << 0) /* complete, post, poll_item */
#define PL_SERVICES_KNOWN PL_SERVICES_ASYNC_RUNS /* every group this header defines */

/* Error classes a plugin reports through set_error. Free text is allowed; these are the ones the
 * rollout guardrails and reports group by. */
#define PL_ERR_INVALID_INPUT "invalid_input"
#define PL_ERR_UPSTREAM "upstream"         /* provider answered with an error status */
#define PL_ERR_TIMEOUT "timeout"           /* provider or deadline timeout */
#define PL_ERR_RATE_LIMITED "rate_limited" /* provider 429 after retries */
#define PL_ERR_MALFORMED "malformed"       /* provider answered with a body we could not parse */
#define PL_ERR_INTERNAL "internal"         /* bug or exception inside the plugin */
#define PL_ERR_MEMORY "memory" /* set by the host: the request passed its heap cap (server.max_request_memory_mb) */
#define PL_ERR_CRASHED "crashed" /* set by the host: the plugin's runner process died or hung (isolation: process) */

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
typedef struct pl_run_context pl_run_context; /* one stage run of one request; valid during run() and,
                                               * after run() returned PL_RUN_PENDING, until complete()
                                               * returns */
typedef struct pl_task_group pl_task_group;   /* tasks submitted to the shared worker pool; valid from
                                               * group_create until group_destroy */

/* Outbound HTTP through a named provider of the daemon config (base URL, key, limits and retries
 * are applied by the host). Asynchronous: see http_send. */
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

/* Services the host gives a plugin, as `host` in create(). The table is the host's and stays valid
 * until the instance's destroy() returns. Every service that takes a ctx needs a valid one (see
 * pl_run_context); none may be called after complete() for that ctx has returned. */
typedef struct pl_host_services {
  uint32_t struct_size; /* sizeof(pl_host_services) of the host; fields past it are absent */

  /* Writes message (NUL-terminated, copied) to the daemon log, tagged with the request and stage of
   * ctx. ctx may be NULL (e.g. in create()). Any thread. */
  void (*log)(pl_run_context* ctx, int level, const char* message);

  /* Milliseconds left before the run's deadline: the request's deadline or the stage's timeout,
   * whichever comes first (may be <= 0). Any thread. */
  int64_t (*remaining_ms)(pl_run_context* ctx);
  /* Nonzero when the request was cancelled, the run's deadline passed, or the host stopped waiting
   * for the run: the plugin should end it soon. Any thread. */
  int (*is_cancelled)(pl_run_context* ctx);

  /* The run's output. Copies *output (JSON text and attachment bytes); the last call wins. Returns
   * PL_OK, or PL_ERROR when the JSON is not valid (the run then fails with class "internal").
   * Call before run() returns PL_RUN_OK or before complete(ctx, PL_RUN_OK). */
  int (*set_output)(pl_run_context* ctx, const pl_payload* output);
  /* Why the run fails: before run() returns PL_RUN_ERROR or before complete(ctx, PL_RUN_ERROR).
   * Copies both strings (NUL-terminated; NULL error_class means PL_ERR_INTERNAL). */
  void (*set_error)(pl_run_context* ctx, const char* error_class, const char* message);

  /* Streaming. emit_item hands one item to the stages that consume this stage as a stream; the host
   * copies it. Returns PL_OK, PL_ERROR (the JSON is not valid; the item is dropped) or PL_CANCELLED
   * (the host stopped waiting for this run; the item goes nowhere). Any thread, one at a time per
   * ctx: items keep the order of the calls.
   *
   * next_item, for stages configured with `input: stream`, blocks the calling thread until the
   * upstream stage emits its next item and returns a pl_item_status: PL_ITEM_OK (*item, owned by
   * the host, is valid until the next next_item/poll_item call for ctx or the end of the run),
   * PL_ITEM_END (the stream ended, or the stage has no stream input) or PL_ITEM_CANCELLED. One
   * reader thread per ctx. */
  int (*emit_item)(pl_run_context* ctx, const pl_payload* item);
  int (*next_item)(pl_run_context* ctx, pl_payload* item);

  /* The daemon's shared worker pool. A group collects tasks of one stage run; group_wait runs the
   * group's queued tasks on the calling thread while it waits, so waiting never starves the pool.
   * Memory allocated inside a task is attributed to the request of `ctx`.
   * group_create: a new group, owned by the plugin until group_destroy.
   * group_submit: queues fn(arg), run on a pool thread or in group_wait; returns PL_OK, or PL_FULL
   *   (or PL_ERROR) when it refused: fn will not run, call it yourself. arg is the plugin's and must
   *   stay valid until fn has run.
   * group_wait: returns when every task submitted so far has ended.
   * group_destroy: waits first if tasks are still pending, then frees the group. */
  pl_task_group* (*group_create)(pl_run_context* ctx);
  int (*group_submit)(pl_task_group* group, void (*fn)(void* arg), void* arg);
  void (*group_wait)(pl_task_group* group);
  void (*group_destroy)(pl_task_group* group);

  /* Outbound HTTP. Copies *request and the strings it points to. Returns PL_OK when the request was
   * queued: callback(user, response) then runs exactly once, on the host's I/O thread, so it must be
   * short and must not block (hand work on with post()); *response is valid during the callback
   * only. Returns PL_ERROR when no HTTP client is configured: the callback will not run. The
   * plugin's library stays loaded until the callback has returned. */
  int (*http_send)(pl_run_context* ctx, const pl_http_request* request, pl_http_callback callback,
                   void* user);

  /* Asynchronous runs (service group PL_SERVICES_ASYNC_RUNS): a stage that waits on the network
   * returns from run() instead of parking a pool thread. Present when the host's struct_size covers
   * them; a plugin that needs them sets PL_SERVICES_ASYNC_RUNS in required_services, and a host
   * without them refuses it at load time.
   *
   * complete: ends a run for which run() returned PL_RUN_PENDING, with PL_RUN_OK after set_output
   * or PL_RUN_ERROR after set_error; exactly once, from any thread (also from inside run() before
   * it returns). ctx and the other services stay usable until complete returns, also when the host
   * has stopped waiting for the run (deadline or cancellation: is_cancelled says so and the run
   * should end soon); ctx is invalid after it. */
  void (*complete)(pl_run_context* ctx, int status);
  /* Runs fn(arg) on the worker pool, charged to the run's memory account: where a callback from
   * the I/O thread or from wake hands its work. Returns PL_OK; fn runs exactly once. The library
   * stays loaded until fn has returned. */
  int (*post)(pl_run_context* ctx, void (*fn)(void* arg), void* arg);
  /* next_item without blocking; returns a pl_item_status: PL_ITEM_OK (*item valid as for
   * next_item), PL_ITEM_END, PL_ITEM_CANCELLED, or PL_ITEM_PENDING: nothing yet, and wake(user)
   * will be called once, on another thread, when the stream has changed (an item, its end, or the
   * run's cancellation); poll again then. wake must be short and must not block (hand work on with
   * post()). At most one poll pending per ctx. */
  int (*poll_item)(pl_run_context* ctx, pl_payload* item, void (*wake)(void* user), void* user);
} pl_host_services;

typedef struct pl_error {
  char message[512]; /* set by create() on failure, NUL-terminated */
} pl_error;

typedef struct pl_plugin_descriptor {
  uint32_t abi_version; /* PL_ABI_VERSION the plugin was built against; checked first */
  uint32_t struct_size; /* sizeof(pl_plugin_descriptor) of the plugin */
  const char* name;     /* plugin name, e.g. "menu_ocr_tesseract" */
  const char* version;  /* plugin version, e.g. "1.4.0" */
  const char* stage;    /* stage it implements, e.g. "ocr" */
  const char* variant;  /* "serial", "parallel", ... */

  /* Creates an instance from its JSON config (the variant's `config:` block of the daemon config;
   * config_json is not NUL-terminated and valid during the call only). Called on the thread that
   * loads the configuration, never concurrently with itself for one library. `host` stays valid
   * until this instance's destroy() returns. Returns the instance, owned by the host until it
   * passes it to destroy(); or NULL after writing why into *err (which may be NULL). */
  void* (*create)(const char* config_json, size_t config_size, const pl_host_services* host,
                  pl_error* err);
  /* Runs the stage for one request, on a worker pool thread, concurrently with other runs of the
   * same instance. *input (owned by the host) is valid until run() returns. ctx is valid until
   * run() returns PL_RUN_OK or PL_RUN_ERROR, or, when it returns PL_RUN_PENDING, until complete(ctx)
   * returns. Returns a pl_run_status: PL_RUN_OK after set_output, PL_RUN_ERROR after set_error, or
   * PL_RUN_PENDING (needs PL_SERVICES_ASYNC_RUNS) when the run goes on and ends with complete(). */
  int (*run)(void* instance, pl_run_context* ctx, const pl_payload* input);
  /* Frees an instance. Called once per instance, on any thread, after create() returned it. It may
   * assume that no run of the instance is in progress or pending (every run() has returned and
   * every pending run has called complete()), and that no callback (http_send's, wake) and no
   * posted or submitted task that the host runs for it remains. It must free everything the
   * instance owns and must not call host services; threads the instance started must have ended
   * when it returns, since the library may be unloaded right after. */
  void (*destroy)(void* instance);

  /* Appended to ABI 1; absent (taken as 0) when struct_size does not cover it. */
  uint32_t required_services; /* PL_SERVICES_* groups the plugin needs; the host refuses to load a
                               * plugin requiring a group it does not provide, or one it does not
                               * know */
} pl_plugin_descriptor;

/* The entry point, PL_ENTRY_SYMBOL: returns the plugin's descriptor, valid until unload. Called
 * once per load, on the loading thread. */
typedef const pl_plugin_descriptor* (*pl_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PIPELINED_PLUGIN_ABI_H */
