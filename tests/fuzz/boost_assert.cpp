// BOOST_ASSERT's handler in the fuzz build (BOOST_ENABLE_ASSERT_HANDLER, top-level CMakeLists.txt).
// A failed assertion aborts with the usual message, as without a handler, so the fuzzer reports it;
// except one assertion that Boost 1.81 (Debian 12) has wrong, which is left to the code after it.
#include <boost/assert.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// Beast's basic_parser::parse_chunk_header asserts n >= 5 when it is entered again to look for the
// end of a final chunk's trailers. A chunked body whose first chunk is the last one ("0\r\n") can be
// entered again with 4 bytes (one more arrived): the code after the assertion then asks for more
// data, correctly. Upstream corrected the assertion (boostorg/beast#2861, Boost 1.86: n >= 5 only
// when a CRLF is expected, else n >= 3). Release builds define NDEBUG and never check it. Found by
// the http_request target after 8.08 M executions (docs/fuzzing.md, corpus regress_final_chunk_split).
bool known_wrong(const char* expr, const char* function, const char* file) {
  return std::strcmp(expr, "n >= 5") == 0 && std::strstr(file, "boost/beast/http/impl/basic_parser.ipp") != nullptr &&
         std::strstr(function, "parse_chunk_header") != nullptr;
}

}  // namespace

namespace boost {

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  if (known_wrong(expr, function, file)) return;
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
  std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file, long line) {
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr, msg);
  std::abort();
}

}  // namespace boost
