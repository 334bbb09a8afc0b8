// The YAML walker behind config.cpp: converts values and collects every error with its position
// (file, line, column, dotted key). Internal to daemon/config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "daemon/config/config.h"

namespace pipelined::config::detail {

inline std::string join_key(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// A map's known keys and the handler of each: handler(value, dotted key).
using Fields = std::map<std::string, std::function<void(const YAML::Node&, const std::string&)>>;

// Walks the YAML tree, converting values and collecting every error with its position; nothing
// stops at the first error, so one run of --check-config shows all of them.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  std::vector<ConfigError> errors;

  void error(const YAML::Node& at, const std::string& key, const std::string& message) {
    ConfigError e{file_, 0, 0, key, message};
    if (at.IsDefined()) {
      const YAML::Mark mark = at.Mark();
      if (mark.line >= 0) {
        e.line = mark.line + 1;
        e.column = mark.column + 1;
      }
    }
    errors.push_back(std::move(e));
  }

  // "${VAR}" and "${VAR:-default}" anywhere in a scalar, from the environment.
  std::optional<std::string> expand(const YAML::Node& node, const std::string& key) {
    const std::string& in = node.Scalar();
    std::string out;
    for (std::size_t i = 0; i < in.size();) {
      if (in.compare(i, 2, "${") != 0) {
        out += in[i++];
        continue;
      }
      const std::size_t close = in.find('}', i + 2);
      if (close == std::string::npos) {
        error(node, key, "unterminated ${ in '" + in + "'");
        return std::nullopt;
      }
      std::string name = in.substr(i + 2, close - i - 2);
      std::optional<std::string> fallback;
      if (const std::size_t dash = name.find(":-"); dash != std::string::npos) {
        fallback = name.substr(dash + 2);
        name.resize(dash);
      }
      const char* value = std::getenv(name.c_str());
      if (value != nullptr && (*value != '\0' || !fallback)) {
        out += value;
      } else if (fallback) {
        out += *fallback;
      } else {
        error(node, key, "environment variable " + name + " is not set (write ${" + name + ":-default} for a default)");
        return std::nullopt;
      }
      i = close + 1;
    }
    return out;
  }

  std::optional<std::string> scalar(const YAML::Node& node, const std::string& key) {
    if (!node.IsScalar()) {
      error(node, key, "expected a scalar value");
      return std::nullopt;
    }
    return expand(node, key);
  }

  void read(const YAML::Node& node, const std::string& key, std::string& out) {
    if (auto s = scalar(node, key)) out = *s;
  }

  void read(const YAML::Node& node, const std::string& key, bool& out) {
    auto s = scalar(node, key);
    if (!s) return;
    if (*s == "true" || *s == "yes" || *s == "on") out = true;
    else if (*s == "false" || *s == "no" || *s == "off") out = false;
    else error(node, key, "expected true or false, got '" + *s + "'");
  }

  bool read_integer(const YAML::Node& node, const std::string& key, long long& out, long long min, long long max) {
    auto s = scalar(node, key);
    if (!s) return false;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s->c_str(), &end, 10);
    if (s->empty() || *end != '\0' || errno != 0) {
      error(node, key, "expected an integer, got '" + *s + "'");
      return false;
    }
    if (v < min || v > max) {
      error(node, key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + *s);
      return false;
    }
    out = v;
    return true;
  }

  template <typename Int>
  void read_int(const YAML::Node& node, const std::string& key, Int& out, long long min, long long max) {
    long long v = 0;
    if (read_integer(node, key, v, min, max)) out = static_cast<Int>(v);
  }

  void read_millis(const YAML::Node& node, const std::string& key, Millis& out, long long min = 1) {
    long long v = 0;
    if (read_integer(node, key, v, min, 365LL * 24 * 3600 * 1000)) out = Millis(v);
  }

  void read_double(const YAML::Node& node, const std::string& key, double& out, double min, double max) {
    auto s = scalar(node, key);
    if (!s) return;
    char* end = nullptr;
    const double v = std::strtod(s->c_str(), &end);
    if (s->empty() || *end != '\0') {
      error(node, key, "expected a number, got '" + *s + "'");
    } else if (!(v >= min && v <= max)) {
      std::ostringstream range;
      range << "must be between " << min << " and " << max << ", got " << *s;
      error(node, key, range.str());
    } else {
      out = v;
    }
  }

  void read_list(const YAML::Node& node, const std::string& key, std::vector<std::string>& out) {
    if (!node.IsSequence()) {
      error(node, key, "expected a list");
      return;
    }
    out.clear();
    for (std::size_t i = 0; i < node.size(); ++i)
      if (auto s = scalar(node[i], key + "[" + std::to_string(i) + "]")) out.push_back(*s);
  }

  // "host:port" or "[v6]:port".
  void read_host_port(const YAML::Node& node, const std::string& key, std::string& host, std::uint16_t& port) {
    auto s = scalar(node, key);
    if (!s) return;
    const std::size_t colon = s->rfind(':');
    std::string h = colon == std::string::npos ? "" : s->substr(0, colon);
    const std::string p = colon == std::string::npos ? "" : s->substr(colon + 1);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    char* end = nullptr;
    const long v = std::strtol(p.c_str(), &end, 10);
    if (h.empty() || p.empty() || *end != '\0' || v < 0 || v > 65535) {
      error(node, key, "expected host:port (for example 127.0.0.1:8080), got '" + *s + "'");
      return;
    }
    host = h;
    port = static_cast<std::uint16_t>(v);
  }

  // Free-form YAML (a plugin's config, a response template) as JSON with scalar types kept.
  nlohmann::json to_json(const YAML::Node& node, const std::string& key) {
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        nlohmann::json out = nlohmann::json::object();
        for (const auto& kv : node) out[kv.first.Scalar()] = to_json(kv.second, join_key(key, kv.first.Scalar()));
        return out;
      }
      case YAML::NodeType::Sequence: {
        nlohmann::json out = nlohmann::json::array();
        for (std::size_t i = 0; i < node.size(); ++i) out.push_back(to_json(node[i], key + "[" + std::to_string(i) + "]"));
        return out;
      }
      case YAML::NodeType::Scalar: {
        auto s = expand(node, key);
        if (!s) return nullptr;
        if (node.Tag() == "!") return *s;  // quoted: always a string
        if (*s == "true") return true;
        if (*s == "false") return false;
        if (*s == "null" || *s == "~") return nullptr;
        char* end = nullptr;
        const long long i = std::strtoll(s->c_str(), &end, 10);
        if (!s->empty() && *end == '\0') return i;
        const double d = std::strtod(s->c_str(), &end);
        if (!s->empty() && *end == '\0') return d;
        return *s;
      }
      default:
        return nullptr;
    }
  }

  // A scalar that must name one of `choices`; `out` changes only on a match.
  template <typename T>
  void read_choice(const YAML::Node& node, const std::string& key, std::initializer_list<std::pair<const char*, T>> choices,
                   T& out) {
    auto s = scalar(node, key);
    if (!s) return;
    std::string names;
    for (const auto& [name, value] : choices) {
      if (*s == name) {
        out = value;
        return;
      }
      names += (names.empty() ? "'" : " or '") + std::string(name) + "'";
    }
    error(node, key, "expected " + names + ", got '" + *s + "'");
  }

  // A map whose keys are names the user chose (providers, pipelines, stages, variants):
  // `entry(name, value, dotted key)` for each, in file order.
  void read_named(const YAML::Node& node, const std::string& key, const std::string& what,
                  const std::function<void(const std::string&, const YAML::Node&, const std::string&)>& entry) {
    if (!node.IsMap()) {
      error(node, key, "expected a map of " + what);
      return;
    }
    for (const auto& kv : node) entry(kv.first.Scalar(), kv.second, join_key(key, kv.first.Scalar()));
  }

  // Reads the members of a map: handlers by key; any other key is an error.
  void read_map(const YAML::Node& node, const std::string& key, const Fields& fields) {
    if (!node.IsMap()) {
      error(node, key, "expected a map");
      return;
    }
    for (const auto& kv : node) {
      const std::string name = kv.first.Scalar();
      const std::string child = join_key(key, name);
      auto it = fields.find(name);
      if (it == fields.end()) {
        error(kv.first, child, "unknown key '" + name + "'");
        continue;
      }
      it->second(kv.second, child);
    }
  }

 private:
  std::string file_;
};

}  // namespace pipelined::config::detail
