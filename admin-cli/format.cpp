#include "admin-cli/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "common/percent.h"

namespace pipectl {

using nlohmann::json;
using pipelined::common::format_percent;

const json& field(const json& j, const char* key) {
  static const json empty = json::object();
  if (!j.is_object()) return empty;
  auto it = j.find(key);
  return it == j.end() ? empty : *it;
}

namespace {

// Display width in terminal columns: East Asian wide characters (CJK, kana, full-width forms)
// take two, UTF-8 continuation bytes none.
std::size_t width(const std::string& s) {
  std::size_t columns = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    unsigned cp = c;
    std::size_t n = 1;
    if (c >= 0xF0) n = 4, cp = c & 0x07;
    else if (c >= 0xE0) n = 3, cp = c & 0x0F;
    else if (c >= 0xC0) n = 2, cp = c & 0x1F;
    for (std::size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    const bool wide = (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
                      (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                      (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x20000 && cp <= 0x3FFFD);
    columns += wide ? 2 : 1;
    i += n;
  }
  return columns;
}

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string variants(const json& v) {
  std::string out;
  for (const auto& [stage, variant] : v.items()) out += (out.empty() ? "" : ", ") + stage + "=" + text(variant);
  return out.empty() ? "-" : out;
}

std::string rollout_line(const json& r) {
  std::string line = "rollout " + text(field(r, "id")) + " of " + text(field(r, "pipeline")) + ": " + text(field(r, "status")) +
                     ", candidate " + format_percent(r.value("percent", 0.0) / 100, 2);
  if (r.value("shadow_percent", 0.0) > 0) line += ", shadow " + format_percent(r.value("shadow_percent", 0.0) / 100, 2);
  line += " (" + variants(field(r, "variants")) + ")";
  if (!r.value("reason", "").empty()) line += "\n  reason: " + r.value("reason", "");
  return line;
}

}  // namespace

std::int64_t whole(double v) {
  if (std::isnan(v)) return 0;
  return static_cast<std::int64_t>(std::clamp(v, -9.2e18, 9.2e18));  // inside int64's ±9.22e18
}

std::int64_t whole(const json& j) { return j.is_number_float() ? whole(j.get<double>()) : j.get<std::int64_t>(); }

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string bytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  return u == 0 ? fixed(n, 0) + " B" : fixed(n, 1) + " " + units[u];
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], width(row[i]));
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - width(row[i]) + 2, ' ');
    }
    out << line << "\n";
  }
  return out.str();
}

std::string format_status(const json& s) {
  std::ostringstream out;
  out << "pipelined " << text(field(s, "version")) << ", up " << text(field(s, "uptime_s")) << " s, config " << text(field(s, "config"))
      << "\n";
  out << (s.value("ready", false) ? "ready" : "NOT READY: " + s.value("not_ready_reason", "")) << ", "
      << text(field(s, "requests_in_flight")) << " requests in flight, plugin generation " << text(field(field(s, "plugins"), "generation"))
      << "\n\n";
  const json& rollout = field(s, "rollout");
  std::vector<std::vector<std::string>> rows = {{"PIPELINE", "ROLLOUT", "STATUS", "CANDIDATE", "SHADOW", "VARIANTS"}};
  for (const auto& [name, p] : field(rollout, "pipelines").items()) {
    const json& r = field(p, "rollout");
    if (r.is_null()) {
      rows.push_back({name, "-", "stable only", "0.00 %", "-", variants(p.value("stable_overrides", json::object()))});
    } else {
      rows.push_back({name, text(field(r, "id")), text(field(r, "status")), format_percent(r.value("percent", 0.0) / 100, 2),
                      format_percent(r.value("shadow_percent", 0.0) / 100, 2), variants(field(r, "variants"))});
    }
  }
  out << table(rows);
  for (const auto& [name, p] : field(rollout, "pipelines").items()) {
    const json& r = field(p, "rollout");
    if (!r.is_null() && !r.value("reason", "").empty()) out << name << ": " << r.value("reason", "") << "\n";
    if (p.contains("decision")) out << name << " guardrails: " << field(p, "decision").value("reason", "") << "\n";
  }
  if (rollout.contains("metrics")) {
    const json& m = field(rollout, "metrics");
    out << "\nmetrics rows: " << text(field(m, "written")) << " written, " << text(field(m, "queued")) << " queued, "
        << text(field(m, "lost")) << " lost";
    if (m.value("lost", 0.0) > 0) {
      out << " (";
      bool first = true;
      for (const auto& [cause, n] : field(m, "lost_by_cause").items())
        if (whole(n) > 0) out << (first ? "" : ", ") << cause << " " << n, first = false;
      out << ")";
    }
    out << "\n";
    if (m.value("waiting_for_database", false)) out << "metrics database unreachable: rows wait in the queue\n";
  }
  const json database = rollout.value("database", json::object());
  if (database.value("shared", false) && rollout.contains("replicas")) {
    // Replicas sharing the database: who decides, and who was lost (not seen for replica.timeout_ms).
    out << "\nreplicas (this one: " << text(field(field(rollout, "replica"), "id")) << ")\n";
    std::vector<std::vector<std::string>> replicas = {{"REPLICA", "HOST", "PID", "GENERATION", "ROLE", "LAST SEEN"}};
    for (const auto& r : field(rollout, "replicas")) {
      const std::string role = !r.value("live", false) ? "lost" : r.value("deciding", false) ? "deciding" : "serving";
      replicas.push_back({text(field(r, "id")) + (r.value("this", false) ? " *" : ""), text(field(r, "host")), text(field(r, "pid")),
                          text(field(r, "plugin_generation")), role, text(field(r, "seen_ms_ago")) + " ms ago"});
    }
    out << table(replicas);
  }
  return out.str();
}

std::string format_rollout(const json& a) {
  std::string out;
  if (a.contains("rollout")) out = rollout_line(field(a, "rollout")) + "\n";
  if (a.contains("rolled_back"))
    for (const auto& r : field(a, "rolled_back")) out += rollout_line(r) + "\n";
  if (a.contains("persisted") && !field(a, "persisted").get<bool>())
    out += "warning: in effect on this daemon, but the metrics database could not record it; it is written when the database is back "
           "(until then other replicas and a restart do not see it)\n";
  return out;
}

namespace {

using Figure = std::string (*)(double);

std::string percent(double fraction) { return pipelined::common::format_percent(fraction); }
std::string count(double v) { return std::to_string(whole(v)); }

// "{estimate} [{low}, {high}]", each written by `figure`.
std::string interval_in(const json& j, Figure figure) {
  return figure(j.value("estimate", 0.0)) + " [" + figure(j.value("low", 0.0)) + ", " + figure(j.value("high", 0.0)) + "]";
}

// How a check's figures are written: whole numbers for unit "requests" (critical_crashes), else percents.
Figure check_figure(const json& check) { return check.value("unit", std::string("fraction")) == "requests" ? count : percent; }

}  // namespace

std::string interval(const json& j) { return interval_in(j, percent); }

std::string check_interval(const json& c) { return interval_in(c, check_figure(c)); }

std::string check_threshold(const json& c) { return check_figure(c)(c.value("threshold", 0.0)); }

std::string clock_time(std::int64_t ms, bool with_date) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, with_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
  return buf;
}

namespace {

std::string rollout_header(const json& r) {
  if (r.is_null()) return "no rollout: requests served while none was live";
  return "rollout " + text(field(r, "id")) + " (" + variants(field(r, "variants")) + "), " + text(field(r, "status")) + " at " +
         pipelined::common::format_percent(r.value("percent", 0.0) / 100, 2);
}

}  // namespace

std::string format_report(const json& report) {
  using pipelined::common::format_percent;
  std::ostringstream out;
  for (const auto& [name, p] : field(report, "pipelines").items()) {
    out << "pipeline " << name << ": " << rollout_header(field(p, "rollout")) << "\n";
    std::vector<std::vector<std::string>> rows = {{"ARM", "REQUESTS", "USER SUCCESS", "OWN SUCCESS", "FALLBACKS", "P50", "P95", "P99",
                                                   "PEAK MEM P50", "ERRORS"}};
    for (const auto& [arm, a] : field(p, "arms").items()) {
      std::string errors;
      for (const auto& [cls, n] : field(a, "own_failures_by_class").items()) errors += (errors.empty() ? "" : ", ") + cls + " " + text(n);
      rows.push_back(
          {arm, text(field(a, "requests")), format_percent(a.value("success_rate", 0.0)), format_percent(a.value("own_success_rate", 0.0)),
           text(field(a, "fallbacks")) + " (" + format_percent(a.value("fallback_rate", 0.0)) + ")",
           fixed(field(a, "latency_ms").value("p50", 0.0), 1) + " ms", fixed(field(a, "latency_ms").value("p95", 0.0), 1) + " ms",
           fixed(field(a, "latency_ms").value("p99", 0.0), 1) + " ms", bytes(field(a, "peak_bytes").value("p50", 0.0)),
           errors.empty() ? "-" : errors});
    }
    out << table(rows);
    if (p.contains("time_saved"))
      out << "time saved (geometric mean): " << interval(field(p, "time_saved")) << "; at the median "
          << format_percent(field(p, "time_saved").value("p50", 0.0)) << "\n";
    if (p.contains("memory_increase")) out << "memory increase (request peak heap): " << interval(field(p, "memory_increase")) << "\n";
    if (const json& now = field(p, "memory_now"); now.is_object() && !now.empty()) {
      // Beside the per-request peak the guardrail judges: what each variant holds for all requests.
      std::vector<std::vector<std::string>> held = {{"STAGE", "VARIANT", "ROLE", "ISOLATION", "INSTANCE", "RUNNER RSS"}};
      for (const auto& v : now.value("variants", json::array()))
        held.push_back({text(field(v, "stage")), text(field(v, "variant")), text(field(v, "role")), text(field(v, "isolation")),
                        bytes(v.value("instance_bytes", 0.0)), v.contains("runner_rss_bytes") ? bytes(v.value("runner_rss_bytes", 0.0)) : "-"});
      out << "memory held now (daemon RSS " << bytes(now.value("daemon_rss_bytes", 0.0)) << "):\n";
      if (held.size() > 1) out << table(held);
    }
    const json& shadow = field(p, "shadow");
    if (shadow.value("compared", 0.0) > 0)
      out << "shadow: " << text(field(shadow, "compared")) << " compared, mismatch " << format_percent(shadow.value("mismatch_rate", 0.0))
          << "\n";
    std::vector<std::vector<std::string>> stages = {{"STAGE", "ARM", "RUNS", "FALLBACKS", "P50", "P95"}};
    for (const auto& [arm, a] : field(p, "arms").items())
      for (const auto& [stage, s] : field(a, "stages").items())
        stages.push_back({stage, arm, text(field(s, "runs")), text(field(s, "fallbacks")), fixed(s.value("p50_ms", 0.0), 1) + " ms",
                          fixed(s.value("p95_ms", 0.0), 1) + " ms"});
    if (stages.size() > 1) out << table(stages);
    const json& d = field(p, "decision");
    out << "verdict: " << text(field(p, "verdict")) << "\n";
    std::vector<std::vector<std::string>> checks = {{"CHECK", "RESULT", "ESTIMATE [INTERVAL]", "THRESHOLD", "ALPHA"}};
    for (const auto& c : d.value("checks", json::array()))
      checks.push_back({text(field(c, "rule")), text(field(c, "result")), check_interval(c), check_threshold(c), fixed(c.value("alpha", 0.0), 4)});
    if (checks.size() > 1) out << table(checks);
    std::vector<std::vector<std::string>> events = {{"TIME (UTC)", "ACTOR", "ACTION", "SHARE", "REASON"}};
    for (const auto& e : p.value("events", json::array()))
      events.push_back({clock_time(whole(field(e, "time_ms")), true), text(field(e, "actor")), text(field(e, "action")),
                        format_percent(e.value("percent", 0.0) / 100, 2), text(field(e, "reason"))});
    if (events.size() > 1) out << "decisions and actions, newest first:\n" << table(events);
    out << "\n";
  }
  if (report.value("rows_lost", 0.0) > 0)
    out << "note: " << text(field(report, "rows_lost")) << " metrics rows were lost; figures leave them out\n";
  return out.str();
}

std::string format_plugins(const json& p) {
  std::vector<std::vector<std::string>> rows = {{"PIPELINE", "STAGE", "VARIANT", "PLUGIN", "VERSION", "INSTANCE", "ISOLATION", "RSS", "CRASHES", "FILE"}};
  std::string crashes;
  for (const auto& e : p.value("plugins", json::array())) {
    std::string isolation = "in-process", rss = "-", crashed = "-";
    if (e.contains("runner")) {
      const json& r = field(e, "runner");
      isolation = r.value("up", false) ? "process " + text(field(r, "pid")) : "process (down)";
      rss = bytes(r.value("rss_bytes", 0.0));
      crashed = text(field(r, "crashes"));
      if (!r.value("last_crash", "").empty())
        crashes += text(field(e, "pipeline")) + "/" + text(field(e, "stage")) + "/" + text(field(e, "variant")) +
                   " last crash: " + r.value("last_crash", "") + "\n";
    }
    rows.push_back({text(field(e, "pipeline")), text(field(e, "stage")), text(field(e, "variant")), text(field(e, "plugin")),
                    text(field(e, "version")), bytes(e.value("instance_bytes", 0.0)), isolation, rss, crashed, text(field(e, "file"))});
  }
  return "plugin generation " + text(field(p, "generation")) + ", " + text(field(p, "retired_libraries")) +
         " retired libraries still in use\n" + table(rows) + crashes;
}

}  // namespace pipectl
