#include "admin-cli/html_report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "admin-cli/format.h"
#include "common/percent.h"

namespace pipectl {

using nlohmann::json;
using pipelined::common::format_percent;

namespace {

constexpr double kWidth = 680, kRight = 30, kTop = 28, kBottom = 36;

std::string esc(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string str(const json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? "-" : v.dump(); }
std::string num(double v) { return fixed(v, 1); }  // an SVG coordinate

std::string ms_text(double ms) { return ms < 1000 ? fixed(ms, ms < 10 ? 2 : 1) + " ms" : fixed(ms / 1000, 2) + " s"; }

const char* arm_color(const std::string& arm) { return arm == "candidate" ? "#e15759" : arm == "stable" ? "#4e79a7" : "#59a14f"; }

const char* action_color(const std::string& action) {
  if (action == "rollback") return "#d62728";
  if (action == "pause") return "#ff7f0e";
  if (action == "resume") return "#2ca02c";
  if (action == "decision") return "#9467bd";
  if (action == "promote" || action == "complete") return "#17becf";
  return "#1f77b4";  // start, set_percent, step
}

// One SVG chart: a plot area with linear scales, ticks, and the drawn data (class "d").
class Chart {
 public:
  Chart(std::string name, std::string title, double height = 220, double left = 64)
      : name_(std::move(name)), title_(std::move(title)), height_(height), left_(left) {}

  void x_range(double lo, double hi) { x0_ = lo, x1_ = hi != lo ? hi : lo + 1; }
  void y_range(double lo, double hi) { y0_ = lo, y1_ = hi != lo ? hi : lo + 1; }  // hi < lo: top to bottom
  double x(double v) const { return left_ + (v - x0_) / (x1_ - x0_) * (kWidth - left_ - kRight); }
  double y(double v) const { return height_ - kBottom - (v - y0_) / (y1_ - y0_) * (height_ - kTop - kBottom); }

  void x_tick(double v, const std::string& label) {
    body_ += "<line class=\"grid\" x1=\"" + num(x(v)) + "\" x2=\"" + num(x(v)) + "\" y1=\"" + num(kTop) + "\" y2=\"" +
             num(height_ - kBottom) + "\"/><text class=\"tick\" text-anchor=\"middle\" x=\"" + num(x(v)) + "\" y=\"" +
             num(height_ - kBottom + 14) + "\">" + esc(label) + "</text>";
  }
  void y_tick(double v, const std::string& label) {
    body_ += "<line class=\"grid\" x1=\"" + num(left_) + "\" x2=\"" + num(kWidth - kRight) + "\" y1=\"" + num(y(v)) + "\" y2=\"" +
             num(y(v)) + "\"/><text class=\"tick\" text-anchor=\"end\" x=\"" + num(left_ - 4) + "\" y=\"" + num(y(v) + 4) + "\">" +
             esc(label) + "</text>";
  }
  void y_ticks(int n, std::string (*label)(double)) {
    for (int i = 0; i <= n; ++i) y_tick(y0_ + (y1_ - y0_) * i / n, label(y0_ + (y1_ - y0_) * i / n));
  }
  // Evenly spaced wall-clock ticks over an x range in epoch milliseconds.
  void time_ticks(int n) {
    for (int i = 0; i <= n; ++i) x_tick(x0_ + (x1_ - x0_) * i / n, clock_time(whole(x0_ + (x1_ - x0_) * i / n)));
  }

  // A rectangle in data coordinates (x, y: lower left), with a hover text.
  void bar(double x_lo, double x_hi, double y_lo, double y_hi, const std::string& color, const std::string& title, double opacity = 1) {
    const double top = y(y_hi), px = x(x_lo);
    body_ += "<rect class=\"d\" x=\"" + num(px) + "\" y=\"" + num(top) + "\" width=\"" + num(std::max(1.0, x(x_hi) - px)) + "\" height=\"" +
             num(std::max(1.0, y(y_lo) - top)) + "\" fill=\"" + color + "\" fill-opacity=\"" + fixed(opacity, 2) + "\"><title>" +
             esc(title) + "</title></rect>";
  }
  void vline(double v, const std::string& color, const std::string& title, bool dashed = false) {
    body_ += "<line class=\"d\" x1=\"" + num(x(v)) + "\" x2=\"" + num(x(v)) + "\" y1=\"" + num(kTop) + "\" y2=\"" + num(height_ - kBottom) +
             "\" stroke=\"" + color + "\" stroke-width=\"1.5\"" + (dashed ? " stroke-dasharray=\"4 3\"" : "") + "><title>" + esc(title) +
             "</title></line>";
  }
  void point(double vx, double vy, const std::string& color, const std::string& title) {
    body_ += "<circle class=\"d\" cx=\"" + num(x(vx)) + "\" cy=\"" + num(y(vy)) + "\" r=\"3\" fill=\"" + color + "\"><title>" + esc(title) +
             "</title></circle>";
  }
  // A path through (xs[i], ys[i]); a null y breaks the line. Each value also gets a point, so a
  // series of one bucket still shows.
  void series(const std::vector<double>& xs, const json& ys, const std::string& color, const std::string& label,
              std::string (*text)(double)) {
    std::string d;
    bool pen = false;
    for (std::size_t i = 0; i < xs.size() && i < ys.size(); ++i) {
      if (!ys[i].is_number()) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + num(x(xs[i])) + " " + num(y(ys[i].get<double>()));
      pen = true;
    }
    if (d.empty()) return;
    body_ += "<path class=\"d\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" d=\"" + d + "\"><title>" + esc(label) +
             "</title></path>";
    for (std::size_t i = 0; i < xs.size() && i < ys.size(); ++i)
      if (ys[i].is_number())
        point(xs[i], ys[i].get<double>(), color,
              label + " " + clock_time(whole(xs[i])) + ": " + text(ys[i].get<double>()));
  }
  void step_path(const std::string& d, const std::string& color, const std::string& title) {
    body_ += "<path class=\"d\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" d=\"" + d + "\"><title>" + esc(title) +
             "</title></path>";
  }
  void legend(const std::vector<std::pair<std::string, std::string>>& entries) {
    double at = left_;
    for (const auto& [label, color] : entries) {
      body_ += "<rect x=\"" + num(at) + "\" y=\"8\" width=\"10\" height=\"10\" fill=\"" + color + "\"/><text class=\"tick\" x=\"" +
               num(at + 14) + "\" y=\"17\">" + esc(label) + "</text>";
      at += 24 + 7 * static_cast<double>(label.size());
    }
  }
  void note(const std::string& text) {
    body_ +=
        "<text class=\"note\" text-anchor=\"middle\" x=\"" + num(kWidth / 2) + "\" y=\"" + num(height_ / 2) + "\">" + esc(text) + "</text>";
  }

  std::string svg() const {
    return "<figure><figcaption>" + esc(title_) + "</figcaption><svg class=\"chart\" data-chart=\"" + esc(name_) +
           "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + num(kWidth) + " " + num(height_) + "\" width=\"" + num(kWidth) +
           "\" height=\"" + num(height_) + "\" role=\"img\"><title>" + esc(title_) + "</title><rect class=\"frame\" x=\"" + num(left_) +
           "\" y=\"" + num(kTop) + "\" width=\"" + num(kWidth - left_ - kRight) + "\" height=\"" + num(height_ - kTop - kBottom) + "\"/>" +
           body_ + "</svg></figure>\n";
  }

 private:
  std::string name_, title_;
  double height_, left_;
  double x0_ = 0, x1_ = 1, y0_ = 0, y1_ = 1;
  std::string body_;
};

std::string percent_label(double v) { return format_percent(v, 0); }
std::string percent100_label(double v) { return format_percent(v / 100, 0); }
std::string count_label(double v) { return fixed(v, 0); }

std::vector<std::pair<std::string, std::string>> arm_legend(const json& arms) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [arm, a] : arms.items()) out.emplace_back(arm, arm_color(arm));
  return out;
}

// Each arm's latency histogram on the shared log-spaced edges, with p50 and p95 marked.
std::string latency_chart(const json& arms) {
  Chart c("latency", "Latency distribution per arm (log-spaced buckets; dashed: p50 and p95)");
  json edges;
  std::int64_t top = 1;
  for (const auto& [arm, a] : arms.items()) {
    if (!a.contains("latency_histogram")) continue;
    edges = field(field(a, "latency_histogram"), "edges_ms");
    for (const auto& n : field(field(a, "latency_histogram"), "counts")) top = std::max(top, whole(n));
  }
  if (!edges.is_array() || edges.size() < 2) {
    c.note("no requests in the window");
    return c.svg();
  }
  const auto bins = static_cast<double>(edges.size() - 1);
  const double lo = edges.front().get<double>(), hi = edges.back().get<double>();
  c.x_range(0, bins);
  c.y_range(0, static_cast<double>(top));
  c.y_ticks(4, count_label);
  for (std::size_t i = 0; i < edges.size(); i += 4) c.x_tick(static_cast<double>(i), ms_text(edges[i].get<double>()));
  c.legend(arm_legend(arms));
  const double k = static_cast<double>(arms.size());
  double slot = 0;
  for (const auto& [arm, a] : arms.items()) {
    if (!a.contains("latency_histogram")) continue;
    const json& counts = field(field(a, "latency_histogram"), "counts");
    for (std::size_t i = 0; i < counts.size(); ++i) {
      const std::int64_t n = whole(counts[i]);
      if (n == 0) continue;
      const double left = static_cast<double>(i) + 0.05 + 0.9 * slot / k;
      c.bar(left, left + 0.9 / k, 0, static_cast<double>(n), arm_color(arm),
            arm + ": " + std::to_string(n) + " requests in [" + ms_text(edges[i].get<double>()) + ", " +
                ms_text(edges[i + 1].get<double>()) + ")");
    }
    for (const char* q : {"p50", "p95"}) {
      const double v = field(a, "latency_ms").value(q, 0.0);
      if (v <= 0) continue;
      c.vline(std::clamp(std::log(v / lo) / std::log(hi / lo) * bins, 0.0, bins), arm_color(arm), arm + " " + q + " " + ms_text(v), true);
    }
    ++slot;
  }
  return c.svg();
}

// One series per arm over the report's time buckets: a rate (0 to 1) or, with a `label` other than
// percent_label, a quantity from 0 to its largest value.
std::string time_chart(const std::string& name, const std::string& title, const json& timeline, const char* key,
                       std::string (*label)(double) = percent_label) {
  Chart c(name, title, 200);
  const json& starts = field(timeline, "start_ms");
  if (starts.empty()) {
    c.note("no requests in the window");
    return c.svg();
  }
  const double bucket = timeline.value("bucket_ms", 1.0);
  std::vector<double> xs;
  for (const auto& s : starts) xs.push_back(s.get<double>() + bucket / 2);
  double top = 1;
  if (label != percent_label)
    for (const auto& [arm, series] : field(timeline, "arms").items())
      for (const auto& v : field(series, key))
        if (v.is_number()) top = std::max(top, v.get<double>() * 1.1);
  c.x_range(starts.front().get<double>(), starts.back().get<double>() + bucket);
  c.y_range(0, top);
  c.y_ticks(4, label);
  c.time_ticks(4);
  c.legend(arm_legend(field(timeline, "arms")));
  for (const auto& [arm, series] : field(timeline, "arms").items())
    c.series(xs, field(series, key), arm_color(arm), arm + " " + key, label);
  return c.svg();
}

// The configured share (a step line through the events), the share of requests the candidate
// got per bucket (points), and a marker per event.
std::string share_chart(const json& p) {
  Chart c("share", "Candidate share over time: configured (line), served (points), events (vertical lines)");
  const json& timeline = field(p, "timeline");
  const json& starts = field(timeline, "start_ms");
  json events = p.value("events", json::array());
  std::reverse(events.begin(), events.end());  // oldest first
  if (starts.empty() && events.empty()) {
    c.note("no requests and no rollout events in the window");
    return c.svg();
  }
  const double bucket = timeline.value("bucket_ms", 1.0);
  double lo = INFINITY, hi = -INFINITY;
  if (!starts.empty()) lo = starts.front().get<double>(), hi = starts.back().get<double>() + bucket;
  for (const auto& e : events) lo = std::min(lo, field(e, "time_ms").get<double>()), hi = std::max(hi, field(e, "time_ms").get<double>());
  c.x_range(lo, hi + (hi - lo) * 0.02);
  c.y_range(0, 100);
  c.y_ticks(4, percent100_label);
  c.time_ticks(4);
  c.legend({{"configured", "#333333"}, {"served", arm_color("candidate")}});
  std::string d;
  double share = 0;
  for (const auto& e : events) {
    const double t = field(e, "time_ms").get<double>();
    d += (d.empty() ? "M" : "L") + num(c.x(t)) + " " + num(c.y(share));
    share = e.value("percent", 0.0);
    d += "L" + num(c.x(t)) + " " + num(c.y(share));
  }
  if (!d.empty()) c.step_path(d + "L" + num(c.x(hi)) + " " + num(c.y(share)), "#333333", "configured candidate share");
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const json& shares = field(timeline, "candidate_share");
    const json& v = i < shares.size() ? shares[i] : json();
    if (v.is_number())
      c.point(starts[i].get<double>() + bucket / 2, v.get<double>() * 100, arm_color("candidate"),
              "served " + clock_time(whole(starts[i])) + ": " + format_percent(v.get<double>()));
  }
  for (const auto& e : events)
    c.vline(field(e, "time_ms").get<double>(), action_color(str(field(e, "action"))),
            clock_time(whole(field(e, "time_ms"))) + " " + str(field(e, "actor")) + " " + str(field(e, "action")) + " at " +
                format_percent(e.value("percent", 0.0) / 100, 2) + ": " + str(field(e, "reason")));
  return c.svg();
}

// Per stage and arm: a bar to p50, a lighter one on to p95.
std::string stage_chart(const json& arms) {
  std::set<std::string> stages;
  double top = 0;
  for (const auto& [arm, a] : arms.items())
    for (const auto& [stage, s] : field(a, "stages").items()) stages.insert(stage), top = std::max(top, s.value("p95_ms", 0.0));
  const double rows = static_cast<double>(std::max<std::size_t>(1, stages.size() * arms.size()));
  Chart c("stages", "Time per stage and arm (bar: p50, lighter: to p95)", kTop + kBottom + 18 * rows, 110);
  if (stages.empty()) {
    c.note("no stage runs in the window");
    return c.svg();
  }
  c.x_range(0, top);
  c.y_range(rows, 0);  // row 0 at the top
  for (int i = 0; i <= 4; ++i) c.x_tick(top * i / 4, ms_text(top * i / 4));
  c.legend(arm_legend(arms));
  double row = 0;
  for (const auto& stage : stages) {
    c.y_tick(row + 0.5 * static_cast<double>(arms.size()), stage);
    for (const auto& [arm, a] : arms.items()) {
      const json& s = field(field(a, "stages"), stage.c_str());
      const double p50 = s.value("p50_ms", 0.0), p95 = s.value("p95_ms", 0.0);
      const std::string what = stage + " on " + arm + ": " + str(s.value("runs", json(0))) + " runs, " +
                               str(s.value("fallbacks", json(0))) + " fallbacks, p50 " + ms_text(p50) + ", p95 " + ms_text(p95);
      c.bar(0, p50, row + 0.85, row + 0.15, arm_color(arm), what);
      if (p95 > p50) c.bar(p50, p95, row + 0.85, row + 0.15, arm_color(arm), what, 0.35);
      ++row;
    }
  }
  return c.svg();
}

// Request peak heap per arm at p50, p95 and p99.
std::string memory_chart(const json& arms) {
  Chart c("memory", "Request peak heap per arm (p50, p95, p99)");
  const char* quantiles[] = {"p50", "p95", "p99"};
  double top = 0;
  for (const auto& [arm, a] : arms.items())
    for (const char* q : quantiles) top = std::max(top, field(a, "peak_bytes").value(q, 0.0));
  if (arms.empty()) {
    c.note("no requests in the window");
    return c.svg();
  }
  c.x_range(0, 3);
  c.y_range(0, std::max(top, 1.0));
  c.y_ticks(4, bytes);
  for (int i = 0; i < 3; ++i) c.x_tick(i + 0.5, quantiles[i]);
  c.legend(arm_legend(arms));
  const double k = static_cast<double>(arms.size());
  double slot = 0;
  for (const auto& [arm, a] : arms.items()) {
    for (int i = 0; i < 3; ++i) {
      const double v = field(a, "peak_bytes").value(quantiles[i], 0.0);
      const double left = i + 0.1 + 0.8 * slot / k;
      c.bar(left, left + 0.8 / k, 0, v, arm_color(arm), arm + " peak heap " + quantiles[i] + ": " + bytes(v));
    }
    ++slot;
  }
  return c.svg();
}

std::string checks_text(const json& details) {
  std::string out;
  for (const auto& c : field(details, "checks"))
    out += "<li>" + esc(str(field(c, "rule"))) + ": <b>" + esc(str(field(c, "result"))) + "</b> " + esc(check_interval(c)) + " vs " +
           esc(check_threshold(c)) + " (α " + esc(fixed(c.value("alpha", 0.0), 4)) + ")</li>";
  return out.empty() ? "" : "<ul class=\"checks\">" + out + "</ul>";
}

std::string events_table(const json& events) {
  if (events.empty()) return "<p>No rollout events.</p>\n";
  std::string out =
      "<table class=\"events\"><tr><th>time (UTC)</th><th>actor</th><th>action</th><th>share</th><th>reason and figures</th></tr>\n";
  for (const auto& e : events) {
    const std::string action = str(field(e, "action"));
    out += "<tr><td>" + esc(clock_time(whole(field(e, "time_ms")), true) + " UTC") + "</td><td>" + esc(str(field(e, "actor"))) +
           "</td><td><span class=\"action\" style=\"border-color:" + action_color(action) + "\">" + esc(action) + "</span></td><td>" +
           esc(format_percent(e.value("percent", 0.0) / 100, 2)) + "</td><td>" + esc(str(field(e, "reason"))) +
           checks_text(field(e, "details")) + "</td></tr>\n";
  }
  return out + "</table>\n";
}

constexpr const char* kStyle = R"(<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { background: #fff; border: 1px solid #ddd; }
.frame { fill: none; stroke: #999; } .grid { stroke: #eee; } .tick { font-size: 11px; fill: #555; } .note { font-size: 13px; fill: #888; }
table.events { border-collapse: collapse; margin-top: 8px; } table.events td, table.events th { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
.action { border-left: 4px solid; padding-left: 4px; } ul.checks { margin: 4px 0; padding-left: 18px; font-size: 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
</style>
)";

}  // namespace

std::string html_report(const json& report) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pipelined report</title>\n"
      << kStyle << "</head><body>\n";
  out << "<h1>pipelined report</h1>\n<p>Requests since " << esc(clock_time(whole(report.value("since_ms", json(0))), true) + " UTC") << "; "
      << esc(str(report.value("rows_written", json(0)))) << " metrics rows written, " << esc(str(report.value("rows_lost", json(0))))
      << " lost.</p>\n";
  const json& pipelines = field(report, "pipelines");
  for (const auto& [name, p] : pipelines.items()) {
    out << "<h2>pipeline " << esc(name) << "</h2>\n";
    const json& arms = field(p, "arms");
    out << "<p>" << esc(p.value("verdict", "")) << "</p>\n<pre>" << esc(format_report({{"pipelines", {{name, p}}}})) << "</pre>\n";
    out << "<div class=\"charts\">\n"
        << latency_chart(arms) << time_chart("latency_time", "Median latency over time", field(p, "timeline"), "latency_p50_ms", ms_text)
        << share_chart(p)
        << time_chart("own_success", "Candidate success: runs where no attempt of the arm's own variants failed", field(p, "timeline"),
                      "own_success_rate")
        << time_chart("user_success", "User success: answers users got (fallback included)", field(p, "timeline"), "success_rate")
        << time_chart("fallback", "Fallback rate: runs where a candidate stage failed and stable answered", field(p, "timeline"),
                      "fallback_rate")
        << stage_chart(arms) << memory_chart(arms)
        << time_chart("memory_time", "Median request peak heap over time", field(p, "timeline"), "peak_bytes_p50", bytes) << "</div>\n";
    out << "<h3>Events, newest first</h3>\n" << events_table(field(p, "events"));
  }
  if (pipelines.empty()) out << "<p>No pipelines in the report.</p>\n";
  out << "</body></html>\n";
  return out.str();
}

}  // namespace pipectl
