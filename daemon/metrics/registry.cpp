#include "daemon/metrics/metrics.h"

#include <atomic>
#include <charconv>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>

namespace pipelined::metrics {

namespace {

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
std::string escaped(std::string_view s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quote) out += "\\\"";
    else out += c;
  }
  return out;
}

std::string label_text(const std::vector<std::pair<std::string, std::string>>& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (const auto& [k, v] : labels) out += (out.size() > 1 ? "," : "") + k + "=\"" + escaped(v, true) + "\"";
  return out + "}";
}

struct Series {
  std::atomic<double> sum{0};  // a counter's value; a histogram's sum
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;  // histogram: per bucket (not cumulative), then +Inf
};

}  // namespace

void Scrape::family(std::string_view name, std::string_view type, std::string_view help) {
  text += "# HELP " + std::string(name) + " " + escaped(help, false) + "\n# TYPE " + std::string(name) + " " + std::string(type) + "\n";
}

void Scrape::sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels, double value) {
  text += std::string(name) + label_text(labels) + " " + number(value) + "\n";
}

struct Registry::Family {
  std::string name, help;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  // histogram upper bounds; empty for a counter
  bool histogram = false;
  mutable std::shared_mutex mu;
  std::map<Labels, std::unique_ptr<Series>> series;

  Series& at(const Labels& values) {
    {
      std::shared_lock lock(mu);
      if (auto it = series.find(values); it != series.end()) return *it->second;
    }
    std::unique_lock lock(mu);
    auto& s = series[values];
    if (!s) {
      s = std::make_unique<Series>();
      if (histogram) {
        s->buckets = std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1);
        for (std::size_t i = 0; i <= bounds.size(); ++i) s->buckets[i] = 0;
      }
    }
    return *s;
  }

  std::vector<std::pair<std::string, std::string>> pairs(const Labels& values) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i < label_names.size(); ++i) out.emplace_back(label_names[i], i < values.size() ? values[i] : "");
    return out;
  }

  void render(Scrape& out) const {
    out.family(name, histogram ? "histogram" : "counter", help);
    std::shared_lock lock(mu);
    for (const auto& [values, s] : series) {
      auto labels = pairs(values);
      if (!histogram) {
        out.sample(name, labels, s->sum.load(std::memory_order_relaxed));
        continue;
      }
      // _count is the sum of the buckets read here, so +Inf and _count agree within a scrape.
      std::uint64_t cumulative = 0;
      labels.emplace_back("le", "");
      for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += s->buckets[i].load(std::memory_order_relaxed);
        labels.back().second = i < bounds.size() ? number(bounds[i]) : "+Inf";
        out.sample(name + "_bucket", labels, static_cast<double>(cumulative));
      }
      labels.pop_back();
      out.sample(name + "_sum", labels, s->sum.load(std::memory_order_relaxed));
      out.sample(name + "_count", labels, static_cast<double>(cumulative));
    }
  }
};

struct Registry::Impl {
  std::mutex mu;  // declarations and collectors: at start, and against render()
  std::deque<Family> families;
  std::vector<std::function<void(Scrape&)>> collectors;
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

Registry::Family& Registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
  std::lock_guard lock(impl_->mu);
  auto& f = impl_->families.emplace_back();
  f.name = std::move(name);
  f.help = std::move(help);
  f.label_names = std::move(label_names);
  return f;
}

Registry::Family& Registry::histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                      std::vector<double> buckets) {
  auto& f = counter(std::move(name), std::move(help), std::move(label_names));
  f.histogram = true;
  f.bounds = std::move(buckets);
  return f;
}

void Registry::add(Family& counter, const Labels& values, double by) {
  counter.at(values).sum.fetch_add(by, std::memory_order_relaxed);
}

void Registry::observe(Family& histogram, const Labels& values, double value) {
  Series& s = histogram.at(values);
  std::size_t i = 0;
  while (i < histogram.bounds.size() && value > histogram.bounds[i]) ++i;
  s.buckets[i].fetch_add(1, std::memory_order_relaxed);
  s.sum.fetch_add(value, std::memory_order_relaxed);
}

void Registry::add_collector(std::function<void(Scrape&)> collect) {
  std::lock_guard lock(impl_->mu);
  impl_->collectors.push_back(std::move(collect));
}

std::string Registry::render() const {
  Scrape out;
  std::lock_guard lock(impl_->mu);
  for (const auto& f : impl_->families) f.render(out);
  for (const auto& c : impl_->collectors) c(out);
  return std::move(out.text);
}

}  // namespace pipelined::metrics
