#include "answer_log.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace provider_sim {

AnswerLog::AnswerLog(const std::string& path) : out_(path, std::ios::trunc) {
  if (!out_) throw std::runtime_error("cannot open the answer log " + path);
}

void AnswerLog::record(std::string_view endpoint, int status, const std::string& body) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  out_ << ns << ' ' << (endpoint.empty() ? "-" : endpoint) << ' ' << status;
  if (endpoint == "images/generations" && status == 200) {
    const auto answer = nlohmann::json::parse(body, nullptr, false);
    if (answer.is_object())
      for (const auto& d : answer.value("data", nlohmann::json::array()))
        if (d.is_object() && d.contains("url") && d["url"].is_string()) out_ << ' ' << d["url"].get<std::string>();
  }
  out_ << '\n' << std::flush;  // read while the simulator runs
}

}  // namespace provider_sim
