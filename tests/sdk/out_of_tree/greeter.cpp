// An out-of-tree stage: {"name": N} -> {"greeting": "hello, N"}.
#include <pipelined/sdk.hpp>

class Greeter : public pipelined::sdk::Stage {
 public:
  explicit Greeter(const nlohmann::json& config) : greeting_(config.value("greeting", "hello")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context&) override {
    pipelined::sdk::Payload out;
    out.json["greeting"] = greeting_ + ", " + input.json.value("name", "world");
    return out;
  }

 private:
  std::string greeting_;
};

PIPELINED_PLUGIN(Greeter, "greeter", "0.1.0", "greet", "serial")
