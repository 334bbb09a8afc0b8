// Shadow comparison of a stable and a candidate response body.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace pipelined::rollout {

struct CompareRules {
  // JSON pointers ignored. A pointer segment "*" matches every array element or object member,
  // so "/categories/*/items/*/image_url" ignores every item's image URL.
  std::vector<std::string> ignore_fields;
  bool ignore_array_order = false;  // arrays compare as multisets
};

// "" when equal under the rules, else the JSON pointer of the first difference.
std::string first_difference(const nlohmann::json& stable, const nlohmann::json& candidate, const CompareRules& rules);

}  // namespace pipelined::rollout
