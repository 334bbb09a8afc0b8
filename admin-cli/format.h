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

// The member `key` of an object, or an empty object (a reference: safe to iterate, unlike the
// temporary json::value() returns).
const nlohmann::json& field(const nlohmann::json& j, const char* key);

// Durations and percents: common/duration.h and common/percent.h.
std::string bytes(double n);                    // 1536 -> "1.5 KiB"
std::string fixed(double v, int decimals);      // printf's %.*f
std::string interval(const nlohmann::json& j);  // {estimate, low, high} -> "12.0 % [3.0 %, 20.0 %]"
// A guardrail check's {estimate, low, high} and its threshold in the check's unit: percents for a
// fraction, whole numbers for "requests" (critical_crashes). A daemon older than `unit`: fractions.
std::string check_interval(const nlohmann::json& check);
std::string check_threshold(const nlohmann::json& check);
// UTC wall-clock time of an epoch millisecond: "18:47:02", or with_date "2026-11-27 18:47:02".
std::string clock_time(std::int64_t ms, bool with_date = false);
// A JSON number as a whole number. get<long>() of a float outside long's range is undefined
// behaviour; an answer from another daemon version may hold any number. Throws json::type_error
// for a value that is not a number, as get() does.
std::int64_t whole(const nlohmann::json& j);
std::int64_t whole(double v);  // clamped to the int64 range; NaN is 0

}  // namespace pipectl
