#include "daemon/plugin_host/descriptor_check.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace pipelined::plugin_host {

namespace {

constexpr std::size_t kDescriptorSize = offsetof(pl_plugin_descriptor, destroy) + sizeof(void (*)(void*));

// The service groups the plugin needs; 0 for a descriptor from before required_services.
std::uint32_t required_services(const pl_plugin_descriptor* d) {
  const bool present = d->struct_size >= offsetof(pl_plugin_descriptor, required_services) + sizeof(d->required_services);
  return present ? d->required_services : 0;
}

std::string describe_services(std::uint32_t groups) {
  std::string out;
  if (groups & PL_SERVICES_ASYNC_RUNS) out += "asynchronous runs (complete, post, poll_item)";
  if (const std::uint32_t unknown = groups & ~std::uint32_t{PL_SERVICES_KNOWN}) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", static_cast<unsigned>(unknown));
    out += std::string(out.empty() ? "" : ", ") + "unknown service groups " + hex;
  }
  return out;
}

}  // namespace

std::uint32_t provided_services(const pl_host_services* h) {
  std::uint32_t groups = 0;
  if (h->struct_size >= offsetof(pl_host_services, poll_item) + sizeof(h->poll_item) && h->complete && h->post && h->poll_item)
    groups |= PL_SERVICES_ASYNC_RUNS;
  return groups;
}

std::optional<std::string> check_descriptor(const pl_plugin_descriptor* d, const pl_host_services* services) {
  if (d == nullptr) return std::string(PL_ENTRY_SYMBOL) + " returned no descriptor";
  if (d->abi_version != PL_ABI_VERSION)
    return "ABI version " + std::to_string(d->abi_version) + ", this daemon speaks " + std::to_string(PL_ABI_VERSION);
  if (d->struct_size < kDescriptorSize)
    return "descriptor struct_size " + std::to_string(d->struct_size) + " is smaller than ABI 1's " + std::to_string(kDescriptorSize);
  if (!d->name || !d->version || !d->stage || !d->variant || !d->create || !d->run || !d->destroy) return "descriptor has a null field";
  if (const std::uint32_t missing = required_services(d) & ~provided_services(services))
    return "requires host services this daemon does not provide: " + describe_services(missing);
  return std::nullopt;
}

}  // namespace pipelined::plugin_host
