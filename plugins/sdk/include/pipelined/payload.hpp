// pipelined plugin SDK: Payload, the C++ form of what flows between stages, and its codec to and
// from the C ABI's pl_payload. Public: both sides of the ABI (plugins through sdk.hpp, and the host)
// use it, so a payload is encoded and decoded the same way everywhere.
#pragma once

#include <pipelined/plugin_abi.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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

// Copies a C payload: parses its JSON (empty JSON text gives an empty object) and copies every
// attachment's bytes. Throws nlohmann::json::parse_error when the JSON text is not valid.
inline Payload decode_payload(const pl_payload& p) {
  Payload out;
  if (p.json != nullptr && p.json_size > 0) out.json = nlohmann::json::parse(p.json, p.json + p.json_size);
  out.attachments.reserve(p.attachment_count);
  for (std::size_t i = 0; i < p.attachment_count; ++i) {
    const pl_attachment& a = p.attachments[i];
    out.attachments.push_back(
        {a.name ? a.name : "", a.content_type ? a.content_type : "",
         std::make_shared<const std::string>(reinterpret_cast<const char*>(a.data), a.size)});
  }
  return out;
}

// A Payload encoded for the C ABI: holds the serialized JSON and the attachment array that view()
// points into. view() is valid while this object lives (it is neither copied nor moved) and while
// the Payload it was made from lives unchanged (names and attachment bytes are not copied).
class EncodedPayload {
 public:
  explicit EncodedPayload(const Payload& p) : json_(p.json.dump()) {
    attachments_.reserve(p.attachments.size());
    for (const auto& a : p.attachments)
      attachments_.push_back({a.name.c_str(), a.content_type.c_str(),
                              a.data ? reinterpret_cast<const std::uint8_t*>(a.data->data()) : nullptr,
                              a.data ? a.data->size() : 0});
    view_ = {json_.data(), json_.size(), attachments_.data(), attachments_.size()};
  }
  EncodedPayload(const EncodedPayload&) = delete;
  EncodedPayload& operator=(const EncodedPayload&) = delete;

  const pl_payload& view() const { return view_; }

 private:
  std::string json_;
  std::vector<pl_attachment> attachments_;
  pl_payload view_{};
};

}  // namespace pipelined::sdk
