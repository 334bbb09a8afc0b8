// The rollout controller's settings from the daemon's config: the one place that knows both.
#pragma once

#include "daemon/config/config.h"
#include "rollout/settings.h"

namespace pipelined::server {

rollout::RolloutSettings rollout_settings(const config::Config& config);

}  // namespace pipelined::server
