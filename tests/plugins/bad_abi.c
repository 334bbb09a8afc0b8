/* test_bad_abi: a descriptor from an ABI this daemon does not speak (version 999).
 * test_small_descriptor: struct_size smaller than the host's descriptor.
 * test_future_services: requires a host service group this daemon does not know. Built from one file. */
#include <pipelined/plugin_abi.h>

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION 999u
#endif
#ifndef TEST_STRUCT_SIZE
#define TEST_STRUCT_SIZE sizeof(pl_plugin_descriptor)
#endif
#ifndef TEST_REQUIRED_SERVICES
#define TEST_REQUIRED_SERVICES 0u
#endif

static void* create(const char* c, size_t n, const pl_host_services* h, pl_error* e) {
  (void)c, (void)n, (void)h, (void)e;
  return 0;
}
static int run(void* i, pl_run_context* c, const pl_payload* p) {
  (void)i, (void)c, (void)p;
  return PL_ERROR;
}
static void destroy(void* i) { (void)i; }

__attribute__((visibility("default"))) const pl_plugin_descriptor* pipelined_plugin_entry(void) {
  static const pl_plugin_descriptor d = {TEST_ABI_VERSION, TEST_STRUCT_SIZE, "test_bad_abi", "1.0.0", "echo", "serial",
                                         create, run, destroy, TEST_REQUIRED_SERVICES};
  return &d;
}
