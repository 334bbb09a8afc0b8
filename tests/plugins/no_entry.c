/* test_no_entry: a shared object without the pipelined_plugin_entry symbol. */
__attribute__((visibility("default"))) int not_a_plugin(void) { return 42; }
