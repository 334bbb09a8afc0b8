// The load-time checks of a plugin's descriptor against the host services on offer (plugin_abi.h,
// "Lifecycle" step 1). Shared by the in-process plugin host and the plugin runner process, so a
// plugin is refused for the same reasons wherever it is loaded.
#pragma once

#include <pipelined/plugin_abi.h>

#include <cstdint>
#include <optional>
#include <string>

namespace pipelined::plugin_host {

// The service groups (PL_SERVICES_*) a host's table provides: present within its struct_size and set.
std::uint32_t provided_services(const pl_host_services* services);

// Why the descriptor cannot be used with `services`, or nothing when it can.
std::optional<std::string> check_descriptor(const pl_plugin_descriptor* d, const pl_host_services* services);

}  // namespace pipelined::plugin_host
