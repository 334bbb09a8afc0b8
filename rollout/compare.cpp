#include "rollout/compare.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace pipelined::rollout {

namespace {

using nlohmann::json;

std::vector<std::string> split_pointer(const std::string& pointer) {
  std::vector<std::string> out;
  std::size_t pos = 1;
  while (pos <= pointer.size()) {
    const std::size_t next = pointer.find('/', pos);
    std::string token = pointer.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    for (std::size_t i; (i = token.find("~1")) != std::string::npos;) token.replace(i, 2, "/");
    for (std::size_t i; (i = token.find("~0")) != std::string::npos;) token.replace(i, 2, "~");
    out.push_back(token);
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

std::string escape(const std::string& token) {
  std::string out;
  for (char c : token) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

// A pointer segment as an array index: digits only and small enough for size_t. An index past
// size_t cannot name an element (std::stoul threw out_of_range on it, in the shadow run's callback).
std::optional<std::size_t> array_index(const std::string& token) {
  std::size_t i = 0;
  const char* end = token.data() + token.size();
  if (token.empty() || !std::all_of(token.begin(), token.end(), [](unsigned char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  const auto [ptr, ec] = std::from_chars(token.data(), end, i);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return i;
}

// Removes every value that a pattern (with "*" segments) points at.
void erase_matching(json& value, const std::vector<std::string>& pattern, std::size_t depth) {
  if (depth + 1 == pattern.size()) {
    if (pattern[depth] == "*") {
      if (value.is_object()) value = json::object();
      if (value.is_array()) value = json::array();
    } else if (value.is_object()) {
      value.erase(pattern[depth]);
    } else if (const auto i = array_index(pattern[depth]); value.is_array() && i && *i < value.size()) {
      value[*i] = nullptr;
    }
    return;
  }
  auto descend = [&](json& child) { erase_matching(child, pattern, depth + 1); };
  if (pattern[depth] == "*") {
    if (value.is_object() || value.is_array())
      for (auto& child : value) descend(child);
  } else if (value.is_object() && value.contains(pattern[depth])) {
    descend(value[pattern[depth]]);
  } else if (const auto i = array_index(pattern[depth]); value.is_array() && i && *i < value.size()) {
    descend(value[*i]);
  }
}

// Arrays in a canonical order, recursively, for order-insensitive comparison.
void canonical_order(json& value) {
  if (value.is_object()) {
    for (auto& [k, v] : value.items()) canonical_order(v);
  } else if (value.is_array()) {
    for (auto& v : value) canonical_order(v);
    std::sort(value.begin(), value.end(), [](const json& a, const json& b) { return a.dump() < b.dump(); });
  }
}

std::string diff(const json& a, const json& b, const std::string& at) {
  if (a.type() != b.type()) return at.empty() ? "/" : at;
  if (a.is_object()) {
    for (const auto& [k, v] : a.items()) {
      if (!b.contains(k)) return at + "/" + escape(k);
      if (auto d = diff(v, b[k], at + "/" + escape(k)); !d.empty()) return d;
    }
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) return at + "/" + escape(k);
    return "";
  }
  if (a.is_array()) {
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
      if (auto d = diff(a[i], b[i], at + "/" + std::to_string(i)); !d.empty()) return d;
    if (a.size() != b.size()) return at + "/" + std::to_string(std::min(a.size(), b.size()));
    return "";
  }
  return a == b ? "" : (at.empty() ? "/" : at);
}

}  // namespace

std::string first_difference(const json& stable, const json& candidate, const CompareRules& rules) {
  json a = stable, b = candidate;
  for (const auto& pointer : rules.ignore_fields) {
    if (pointer.empty() || pointer[0] != '/') continue;
    const auto pattern = split_pointer(pointer);
    erase_matching(a, pattern, 0);
    erase_matching(b, pattern, 0);
  }
  if (rules.ignore_array_order) {
    canonical_order(a);
    canonical_order(b);
  }
  return diff(a, b, "");
}

}  // namespace pipelined::rollout
