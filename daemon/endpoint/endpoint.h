// An endpoint turns an HTTP request into pipeline input and a pipeline result into the response
// body the frontend already knows, whichever variants ran. Pure functions: no I/O, no state.
#pragma once

#include "daemon/config/config.h"
#include "daemon/engine/engine.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pipelined::endpoint {

struct HttpError {
  int status = 400;
  std::string message;
};

// One part of a multipart/form-data body.
struct Part {
  std::string name;          // form field
  std::string filename;      // empty for plain fields
  std::string content_type;  // empty when the part has none
  std::string data;
};

// The boundary parameter of a multipart/form-data Content-Type; error text when absent or invalid.
std::variant<std::string, HttpError> multipart_boundary(std::string_view content_type);

// Parses a multipart/form-data body as browsers, Python requests and curl send it.
std::variant<std::vector<Part>, HttpError> parse_multipart(std::string_view body, std::string_view boundary);

// Request body -> pipeline input. Multipart: the files of the endpoint's files_field become
// attachments (named after the file), other fields JSON string members. JSON: the parsed body.
// 415 for a Content-Type the endpoint does not take, 400 for a malformed body.
std::variant<engine::Payload, HttpError> build_input(const config::EndpointConfig& endpoint, std::string_view content_type,
                                                     std::string_view body);

// The rollout sticky key per config ("header:X-User-Id", "cookie:uid", "json:user_id"); "" when
// the spec is empty or the request does not carry the key.
using HeaderLookup = std::function<std::string(std::string_view name)>;
std::string sticky_key(const std::string& spec, const HeaderLookup& header, const engine::Payload& input);

struct ResponseMeta {
  std::string request_id;
  std::chrono::microseconds elapsed{0};
  std::map<std::string, std::string> variants;  // stage -> variant whose output was used
};

// Fills the endpoint's response template: "$stages.<stage>[/json/pointer]" and "$meta.<field>"
// strings are replaced; a reference to a missing stage or pointer becomes null. A partial result
// also gets "partial": true and "missing_stages": [...].
nlohmann::json render(const nlohmann::json& response_template, const engine::RunResult& result, const ResponseMeta& meta);

// The body with every member the template fills from "$meta." set to null: what differs between
// two runs by nature (request id, elapsed time, variants), so shadow comparison leaves it out.
nlohmann::json without_meta(const nlohmann::json& response_template, nlohmann::json body);

// HTTP status of a finished run: 200 for complete or partial results; a failed run maps its error
// class: upstream / rate_limited / malformed -> 502, timeout -> 504, invalid_input -> 422, else 500.
int status_for(const engine::RunResult& result);

// {"error": {"status": 400, "message": "...", "class": "..."}}
nlohmann::json error_body(int status, const std::string& message, const std::string& error_class = "");

}  // namespace pipelined::endpoint
