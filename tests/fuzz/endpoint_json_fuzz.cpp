// Fuzzes a JSON endpoint's side of daemon/endpoint: the request body into pipeline input
// (build_input), the rollout sticky key read from it (sticky_key "json:..."), and the response
// template filled from stage outputs (render) and stripped for the shadow comparison
// (without_meta). The body comes from any client; templates and outputs are operator- and
// provider-shaped JSON, so all three must be safe on whatever JSON they are.
// Input: request body, separator, response template (JSON), separator, a stage's output (JSON).
#include <cstdint>
#include <string>

#include "daemon/endpoint/endpoint.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = fuzz::split(data, size, 3);

  config::EndpointConfig e;  // format json, as configs/default.yaml's JSON endpoints
  auto input = endpoint::build_input(e, "application/json; charset=utf-8", in[0]);
  engine::Payload payload;
  if (auto* p = std::get_if<engine::Payload>(&input)) {
    payload = std::move(*p);
  } else if (std::get<endpoint::HttpError>(input).status != 400) {
    fuzz::fail("build_input answered a JSON body with " + std::to_string(std::get<endpoint::HttpError>(input).status));
  }
  // RequestPath::serve: the sticky key from the body and from headers.
  auto header = [&](std::string_view name) -> std::string { return name == "Cookie" ? in[0].substr(0, 64) : "u-1"; };
  endpoint::sticky_key("json:user_id", header, payload);
  endpoint::sticky_key("cookie:uid", header, payload);
  endpoint::sticky_key("header:X-User-Id", header, payload);

  // A template that is not JSON would have failed config loading (config.cpp reads it as YAML).
  const json tmpl = json::parse(in[1], nullptr, false);
  if (tmpl.is_discarded()) return 0;
  engine::RunResult result;
  result.ok = !in[2].empty();
  result.partial = !result.ok;
  result.missing = {"describe"};
  if (json out = json::parse(in[2], nullptr, false); !out.is_discarded()) result.outputs["translate"].json = std::move(out);
  result.outputs["ocr"] = payload;
  endpoint::ResponseMeta meta{"req-1", std::chrono::microseconds(1234567), {{"ocr", "serial"}}};
  const json body = endpoint::render(tmpl, result, meta);
  // What RequestPath::finish sends and the shadow run compares.
  body.dump();
  const json stripped = endpoint::without_meta(tmpl, body);
  // A template that is itself a "$meta." reference is all meta: null by without_meta's contract
  // (the harness asserted the type unconditionally until a 1.2 M-execution run found this case).
  const bool all_meta = tmpl.is_string() && tmpl.get_ref<const std::string&>().rfind("$meta.", 0) == 0;
  if (all_meta ? !stripped.is_null() : body.is_object() != stripped.is_object()) fuzz::fail("without_meta changed the body's type");
  endpoint::status_for(result);
  return 0;
}
