// Fuzzes config loading (daemon/config): YAML parsing, `${VAR}` / `${VAR:-default}` expansion,
// every typed field and the cross-checks. load_string is what load_file runs on the file's text;
// `pipelined --check-config` calls it without catching anything, and a config reload answers from
// its errors, so a bad file must come back as errors with positions, never as an exception.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/config/config.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Variables the seeds and the dictionary name: one set, one set but empty; PIPELINED_FUZZ_UNSET is not.
  setenv("PIPELINED_FUZZ_SET", "value-from-env", 1);
  setenv("PIPELINED_FUZZ_EMPTY", "", 1);
  setenv("OPENAI_API_KEY", "sk-fuzz", 1);
  setenv("GEMINI_API_KEY", "gm-fuzz", 1);
  unsetenv("PIPELINED_FUZZ_UNSET");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const config::LoadResult r = config::load_string(yaml, "fuzz.yaml");
  if ((r.config == nullptr) == r.errors.empty()) fuzz::fail("load_string returned both a config and errors, or neither");
  for (const auto& e : r.errors) {
    if (e.line < 0 || e.column < 0) fuzz::fail("negative error position: " + e.to_string());
    e.to_string();
  }
  if (r.config) {
    // What the daemon relies on after validation (plugin_host, frontend_routes, request_path).
    for (const auto& ep : r.config->endpoints)
      if (r.config->pipeline(ep.pipeline) == nullptr) fuzz::fail("endpoint with an unknown pipeline passed: " + ep.pipeline);
    for (const auto& p : r.config->pipelines)
      for (const auto& s : p.stages)
        if (s.variant(s.stable) == nullptr) fuzz::fail("stage " + s.name + " passed without its stable variant");
  }
  return 0;
}
