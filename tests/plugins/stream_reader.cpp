// test_stream_reader (stage "read", input: stream): reads its upstream's items as they arrive and
// outputs {"items": [each item + "received_at_us"]}.
#include <pipelined/sdk.hpp>

#include <chrono>

namespace {
class StreamReader : public pipelined::sdk::Stage {
 public:
  explicit StreamReader(const nlohmann::json&) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload&, pipelined::sdk::Context& ctx) override {
    pipelined::sdk::Payload out;
    out.json["items"] = nlohmann::json::array();
    pipelined::sdk::Payload item;
    while (ctx.next_item(item)) {
      item.json["received_at_us"] =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
      out.json["items"].push_back(item.json);
    }
    return out;
  }
};
}  // namespace

PIPELINED_PLUGIN(StreamReader, "test_stream_reader", "1.0.0", "read", "serial")
