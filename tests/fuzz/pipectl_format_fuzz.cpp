// Fuzzes pipectl's rendering of the daemon's admin answers (admin-cli/format.cpp, html_report.cpp):
// the status, rollout, report and plugins tables and the HTML report, on any JSON. pipectl parses
// the answer body as the daemon sent it (json::parse without exceptions) and catches std::exception
// around the formatter (pipectl.cpp prints "pipectl: ..."), so only memory errors, UB and escaping
// non-std exceptions are bugs here; an older or newer daemon's answer must not crash it.
#include <cstdint>
#include <exception>
#include <string>

#include "admin-cli/format.h"
#include "admin-cli/html_report.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const nlohmann::json answer = nlohmann::json::parse(data, data + size, nullptr, false);
  if (answer.is_discarded()) return 0;  // pipectl reports the body as not JSON
  for (auto formatter :
       {pipectl::format_status, pipectl::format_rollout, pipectl::format_report, pipectl::format_plugins, pipectl::html_report}) {
    try {
      formatter(answer);
    } catch (const std::exception&) {
      // pipectl.cpp: caught in main, printed, exit status 1.
    }
  }
  return 0;
}
