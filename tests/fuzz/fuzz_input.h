// Splits one fuzz input into the several texts a target needs (a content type and a body, a
// template and a stage output, ...). A plain-text separator keeps the seed corpora readable and
// editable by hand; the fuzzer learns it from the seeds and the dictionaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace pipelined::fuzz {

inline constexpr std::string_view kSeparator = "\n--8<--\n";

// Exactly `n` pieces: the input cut at the first n-1 separators; missing pieces are empty, and the
// last piece keeps any further separators.
inline std::vector<std::string> split(const std::uint8_t* data, std::size_t size, std::size_t n) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> out;
  while (out.size() + 1 < n) {
    const std::size_t at = rest.find(kSeparator);
    if (at == std::string_view::npos) break;
    out.emplace_back(rest.substr(0, at));
    rest.remove_prefix(at + kSeparator.size());
  }
  out.emplace_back(rest);
  out.resize(n);
  return out;
}

// Crashes the fuzzer with a message: an invariant of the code under test does not hold.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant failed: %s\n", what.c_str());
  std::abort();
}

}  // namespace pipelined::fuzz
