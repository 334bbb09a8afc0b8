// Scaffold until the rollout controller lands: every request runs stable, nothing is recorded.
#include "rollout/rollout.h"

namespace pipelined::rollout {

const char* to_string(Arm arm) { return arm == Arm::Candidate ? "candidate" : "stable"; }

struct RolloutController::Impl {};

RolloutController::RolloutController(std::shared_ptr<const config::Config>) : impl_(std::make_unique<Impl>()) {}
RolloutController::~RolloutController() = default;

Assignment RolloutController::assign(const std::string&, const std::string&, std::optional<Arm>) const { return {}; }

void RolloutController::start() {}
void RolloutController::stop() {}
void RolloutController::update_config(std::shared_ptr<const config::Config>) {}
void RolloutController::record(RequestRecord) {}
void RolloutController::record_shadow(ShadowRecord) {}
std::string RolloutController::compare_outputs(const nlohmann::json&, const nlohmann::json&) const { return ""; }
AdminResponse RolloutController::handle_admin(const std::string&, const std::string&, const std::string&) {
  return {404, {{"error", "rollout controller not built yet"}}};
}

}  // namespace pipelined::rollout
