// How a reference plugin's source file defines its plugin: PIPELINED_STAGE_PLUGIN names the plugin
// once and exports a stage class whose constructor takes (config, plugin name). ProviderStage is the
// stage class of every stage whose run is one call of a stage function with its parsed config (and,
// for stages with serial and parallel variants, the Schedule).
//
//   PIPELINED_STAGE_PLUGIN("menu_translate_serial", "translate", "serial",
//                          pipelined::plugins::menu::TranslateStage<pipelined::plugins::Schedule::Serial>)
#pragma once

#include "providers.h"

#include <pipelined/sdk.hpp>

#include <string_view>
#include <type_traits>
#include <utility>

namespace pipelined::plugins {

// An asynchronous stage that parses its config with Config::from(config, plugin) at load and runs
// Fn(in, ctx, config, Args...), where `in` is whichever Fn takes: the request payload, its JSON
// document, or nothing (a stage whose input arrives as a stream).
template <class Config, auto Fn, auto... Args>
class ProviderStage : public sdk::AsyncStage {
 public:
  ProviderStage(const json& config, std::string_view plugin) : config_(Config::from(config, plugin)) {}

  sdk::Task<sdk::Payload> run(const sdk::Payload& input, sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    json output = co_await call(input, ctx);
    co_return sdk::Payload{std::move(output), {}};
  }

 private:
  sdk::Task<json> call(const sdk::Payload& input, const sdk::Context& ctx) const {
    using F = decltype(Fn);
    if constexpr (std::is_invocable_v<F, const sdk::Payload&, const sdk::Context&, const Config&, decltype(Args)...>)
      return Fn(input, ctx, config_, Args...);
    else if constexpr (std::is_invocable_v<F, const json&, const sdk::Context&, const Config&, decltype(Args)...>)
      return Fn(input.json, ctx, config_, Args...);
    else
      return Fn(ctx, config_, Args...);
  }

  const Config config_;
};

}  // namespace pipelined::plugins

// Exports the plugin NAME (stage STAGE, variant VARIANT, version PIPELINED_PLUGINS_VERSION) with the
// stage class given last, constructed with (config, NAME).
#define PIPELINED_STAGE_PLUGIN(NAME, STAGE, VARIANT, ...)                                         \
  namespace {                                                                                     \
  struct PipelinedStagePlugin final : __VA_ARGS__ {                                               \
    using Base = __VA_ARGS__;                                                                     \
    explicit PipelinedStagePlugin(const nlohmann::json& config) : Base(config, NAME) {}           \
  };                                                                                              \
  }                                                                                               \
  PIPELINED_PLUGIN(PipelinedStagePlugin, NAME, PIPELINED_PLUGINS_VERSION, STAGE, VARIANT)
