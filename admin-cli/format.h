// pipectl's tables: the daemon's admin JSON turned into text for people. Pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pipectl {

// Columns padded to their widest cell; the first row is the header.
std::string table(const std::vector<std::vector<std::string>>& rows);

std::string format_status(const nlohmann::json& status);    // GET /admin/status
std::string format_rollout(const nlohmann::json& answer);   // POST /admin/rollout[/…]
std::string format_report(const nlohmann::json& report);    // GET /admin/report
std::string format_plugins(const nlohmann::json& plugins);  // GET /admin/plugins, POST /admin/plugins/reload

// "30s", "15m", "1h", "7d" -> the same text if valid, else "" (pipectl refuses it with exit 2).
bool valid_duration(const std::string& text);
// "1h" -> 3600000; -1 when invalid.
std::int64_t duration_ms(const std::string& text);

std::string percent(double share);  // 0.953 -> "95.3 %"
std::string bytes(double n);        // 1536 -> "1.5 KiB"

}  // namespace pipectl
