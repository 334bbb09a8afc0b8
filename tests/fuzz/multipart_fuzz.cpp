// Fuzzes multipart/form-data request bodies as the frontend takes them (daemon/endpoint): the
// Content-Type's boundary parameter, the part parser, and build_input's mapping of parts to
// attachments and JSON members. Every upload endpoint runs this on bytes straight from the client.
// Input: the Content-Type value, the separator (fuzz_input.h), the body.
#include <cstdint>
#include <string>

#include "daemon/endpoint/endpoint.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = fuzz::split(data, size, 2);
  const std::string& content_type = in[0];
  const std::string& body = in[1];

  // The parser on its own, as build_input calls it: errors are answers (400/415), never throws.
  auto boundary = endpoint::multipart_boundary(content_type);
  if (const auto* b = std::get_if<std::string>(&boundary)) {
    if (b->empty() || b->size() > 200) fuzz::fail("multipart_boundary accepted a boundary of " + std::to_string(b->size()) + " bytes");
    auto parts = endpoint::parse_multipart(body, *b);
    if (const auto* list = std::get_if<std::vector<endpoint::Part>>(&parts)) {
      std::size_t total = 0;
      for (const auto& p : *list) {
        if (p.name.empty()) fuzz::fail("a part without a name was accepted");
        total += p.data.size();
      }
      if (total > body.size()) fuzz::fail("parts hold more bytes than the body");
    } else if (std::get<endpoint::HttpError>(parts).status != 400) {
      fuzz::fail("parse_multipart error status is not 400");
    }
  }

  // The whole mapping, as RequestPath::serve calls it for a multipart endpoint (the menu's upload).
  config::EndpointConfig e;
  e.format = config::RequestFormat::Multipart;
  e.files_field = "image";
  auto input = endpoint::build_input(e, content_type, body);
  if (const auto* p = std::get_if<engine::Payload>(&input)) {
    if (p->attachments.empty()) fuzz::fail("build_input accepted a multipart body without files");
    for (const auto& a : p->attachments)
      if (!a.data || a.data->empty()) fuzz::fail("build_input accepted an empty file");
  } else {
    const int status = std::get<endpoint::HttpError>(input).status;
    if (status != 400 && status != 415) fuzz::fail("build_input answered " + std::to_string(status));
  }
  return 0;
}
