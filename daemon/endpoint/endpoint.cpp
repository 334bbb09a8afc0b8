#include "daemon/endpoint/endpoint.h"

#include <algorithm>
#include <cctype>

namespace pipelined::endpoint {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The media type of a Content-Type value, lower-cased, without parameters.
std::string media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';'))));
}

// Parameter `name` of a header value like `form-data; name="file"; filename="a \"b\".png"`.
std::optional<std::string> parameter(std::string_view value, std::string_view name) {
  const std::size_t n = value.size();
  std::size_t i = value.find(';');
  if (i == std::string_view::npos) return std::nullopt;
  ++i;
  while (i < n) {
    std::size_t eq = i;
    while (eq < n && value[eq] != '=' && value[eq] != ';') ++eq;
    const std::string key = lower(trim(value.substr(i, eq - i)));
    std::string val;
    i = eq;
    if (i < n && value[i] == '=') {
      ++i;
      while (i < n && value[i] == ' ') ++i;
      if (i < n && value[i] == '"') {
        for (++i; i < n && value[i] != '"'; ++i) {
          if (value[i] == '\\' && i + 1 < n) ++i;
          val += value[i];
        }
        while (i < n && value[i] != ';') ++i;
      } else {
        std::size_t end = i;
        while (end < n && value[end] != ';') ++end;
        val = std::string(trim(value.substr(i, end - i)));
        i = end;
      }
    }
    if (key == name) return val;
    if (i < n) ++i;  // past ';'
  }
  return std::nullopt;
}

}  // namespace

std::variant<std::string, HttpError> multipart_boundary(std::string_view content_type) {
  if (media_type(content_type) != "multipart/form-data")
    return HttpError{415, "expected Content-Type multipart/form-data, got '" + std::string(content_type) + "'"};
  auto boundary = parameter(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->size() > 200)
    return HttpError{400, "multipart/form-data without a valid boundary parameter"};
  return *boundary;
}

std::variant<std::vector<Part>, HttpError> parse_multipart(std::string_view body, std::string_view boundary) {
  const std::string delimiter = "--" + std::string(boundary);
  std::size_t pos = body.find(delimiter);
  // Past a preamble the delimiter must start a line; one byte of preamble cannot hold the CRLF.
  if (pos == std::string_view::npos || (pos != 0 && (pos < 2 || body.substr(pos - 2, 2) != "\r\n")))
    return HttpError{400, "malformed multipart body: no opening boundary"};
  pos += delimiter.size();
  std::vector<Part> parts;
  for (;;) {
    if (body.substr(pos, 2) == "--") return parts;  // closing boundary; an epilogue is ignored
    if (body.substr(pos, 2) != "\r\n") return HttpError{400, "malformed multipart body: boundary not followed by CRLF"};
    pos += 2;
    const std::size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return HttpError{400, "malformed multipart body: part headers not terminated"};
    Part part;
    bool disposition = false;
    for (std::string_view headers = body.substr(pos, headers_end - pos); !headers.empty();) {
      const std::size_t eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view{} : headers.substr(eol + 2);
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return HttpError{400, "malformed multipart body: bad part header line"};
      const std::string name = lower(trim(line.substr(0, colon)));
      const std::string_view value = trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (media_type(value) != "form-data") return HttpError{400, "multipart part is not form-data"};
        disposition = true;
        part.name = parameter(value, "name").value_or("");
        part.filename = parameter(value, "filename").value_or("");
      } else if (name == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!disposition || part.name.empty())
      return HttpError{400, "malformed multipart body: a part without Content-Disposition name"};
    const std::size_t data_start = headers_end + 4;
    const std::size_t data_end = body.find("\r\n" + delimiter, data_start);
    if (data_end == std::string_view::npos) return HttpError{400, "malformed multipart body: part not terminated by a boundary"};
    part.data = std::string(body.substr(data_start, data_end - data_start));
    parts.push_back(std::move(part));
    pos = data_end + 2 + delimiter.size();
  }
}

std::variant<engine::Payload, HttpError> build_input(const config::EndpointConfig& endpoint, std::string_view content_type,
                                                     std::string_view body) {
  engine::Payload input;
  if (endpoint.format == config::RequestFormat::Json) {
    if (media_type(content_type) != "application/json")
      return HttpError{415, "expected Content-Type application/json, got '" + std::string(content_type) + "'"};
    input.json = nlohmann::json::parse(body, nullptr, false);
    if (input.json.is_discarded()) return HttpError{400, "malformed JSON body"};
    return input;
  }
  auto boundary = multipart_boundary(content_type);
  if (auto* e = std::get_if<HttpError>(&boundary)) return *e;
  auto parsed = parse_multipart(body, std::get<std::string>(boundary));
  if (auto* e = std::get_if<HttpError>(&parsed)) return *e;
  for (auto& part : std::get<std::vector<Part>>(parsed)) {
    if (part.name == endpoint.files_field) {
      if (part.data.empty()) return HttpError{400, "file '" + part.filename + "' in field '" + part.name + "' is empty"};
      input.attachments.push_back({part.filename.empty() ? part.name : part.filename,
                                   part.content_type.empty() ? "application/octet-stream" : part.content_type,
                                   std::make_shared<const std::string>(std::move(part.data))});
    } else if (!part.filename.empty()) {
      return HttpError{400, "unexpected file in field '" + part.name + "' (files go in '" + endpoint.files_field + "')"};
    } else {
      input.json[part.name] = std::move(part.data);
    }
  }
  if (input.attachments.empty()) return HttpError{400, "no file in multipart field '" + endpoint.files_field + "'"};
  return input;
}

std::string sticky_key(const std::string& spec, const HeaderLookup& header, const engine::Payload& input) {
  if (spec.rfind("header:", 0) == 0) return header(spec.substr(7));
  if (spec.rfind("json:", 0) == 0) {
    auto it = input.json.is_object() ? input.json.find(spec.substr(5)) : input.json.end();
    if (it == input.json.end()) return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
  }
  if (spec.rfind("cookie:", 0) == 0) {
    const std::string wanted = spec.substr(7);
    const std::string cookies = header("Cookie");
    for (std::string_view rest = cookies; !rest.empty();) {
      const std::size_t semi = rest.find(';');
      const std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      const std::size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == wanted) return std::string(pair.substr(eq + 1));
    }
  }
  return "";
}

namespace {
nlohmann::json fill(const nlohmann::json& t, const engine::RunResult& result, const ResponseMeta& meta) {
  if (t.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : t.items()) out[k] = fill(v, result, meta);
    return out;
  }
  if (t.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : t) out.push_back(fill(v, result, meta));
    return out;
  }
  if (!t.is_string()) return t;
  const std::string& s = t.get_ref<const std::string&>();
  if (s.rfind("$stages.", 0) == 0) {
    const std::size_t slash = s.find('/');
    const std::string stage = s.substr(8, slash == std::string::npos ? std::string::npos : slash - 8);
    auto it = result.outputs.find(stage);
    if (it == result.outputs.end()) return nullptr;
    if (slash == std::string::npos) return it->second.json;
    try {
      const nlohmann::json::json_pointer pointer(s.substr(slash));
      return it->second.json.contains(pointer) ? it->second.json.at(pointer) : nlohmann::json(nullptr);
    } catch (const nlohmann::json::exception&) {
      return nullptr;
    }
  }
  if (s == "$meta.request_id") return meta.request_id;
  if (s == "$meta.elapsed_ms") return meta.elapsed.count() / 1000.0;
  if (s == "$meta.elapsed_s") return static_cast<double>(meta.elapsed.count() / 1000) / 1000.0;
  if (s == "$meta.variants") return meta.variants;
  return t;
}
}  // namespace

nlohmann::json render(const nlohmann::json& response_template, const engine::RunResult& result, const ResponseMeta& meta) {
  nlohmann::json out = fill(response_template, result, meta);
  if (result.partial && out.is_object()) {
    out["partial"] = true;
    out["missing_stages"] = result.missing;
  }
  return out;
}

nlohmann::json without_meta(const nlohmann::json& t, nlohmann::json body) {
  if (t.is_string() && t.get_ref<const std::string&>().rfind("$meta.", 0) == 0) return nullptr;
  if (t.is_object() && body.is_object()) {
    for (const auto& [k, v] : t.items())
      if (body.contains(k)) body[k] = without_meta(v, std::move(body[k]));
  } else if (t.is_array() && body.is_array()) {
    for (std::size_t i = 0; i < t.size() && i < body.size(); ++i) body[i] = without_meta(t[i], std::move(body[i]));
  }
  return body;
}

int status_for(const engine::RunResult& result) {
  if (result.ok || result.partial) return 200;
  const std::string& c = result.error_class;
  if (c == PL_ERR_UPSTREAM || c == PL_ERR_RATE_LIMITED || c == PL_ERR_MALFORMED) return 502;
  if (c == PL_ERR_TIMEOUT) return 504;
  if (c == PL_ERR_INVALID_INPUT) return 422;
  // 507, not 503: the same request would pass the cap again, so it must not invite a retry.
  if (c == PL_ERR_MEMORY) return 507;
  return 500;
}

nlohmann::json error_body(int status, const std::string& message, const std::string& error_class) {
  nlohmann::json e = {{"status", status}, {"message", message}};
  if (!error_class.empty()) e["class"] = error_class;
  return {{"error", e}};
}

}  // namespace pipelined::endpoint
