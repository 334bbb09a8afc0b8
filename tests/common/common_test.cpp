// common/: the one duration grammar and the one percent formatter.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/duration.h"
#include "common/percent.h"

namespace pipelined::common {
namespace {

using std::chrono::milliseconds;

std::int64_t ms(std::string_view text) {
  const auto d = parse_duration(text);
  return d ? d->count() : -1;
}

TEST(ParseDuration, EveryUnit) {
  EXPECT_EQ(ms("250ms"), 250);
  EXPECT_EQ(ms("30s"), 30'000);
  EXPECT_EQ(ms("15m"), 900'000);
  EXPECT_EQ(ms("1h"), 3'600'000);
  EXPECT_EQ(ms("7d"), 7 * 86'400'000LL);
  EXPECT_EQ(ms("0s"), 0);
  EXPECT_EQ(ms("0ms"), 0);
  EXPECT_EQ(ms("007s"), 7000);
}

TEST(ParseDuration, FractionsAreExact) {
  EXPECT_EQ(ms("1.5h"), 5'400'000);
  EXPECT_EQ(ms("0.5s"), 500);
  EXPECT_EQ(ms(".5s"), 500);
  EXPECT_EQ(ms("1.005s"), 1005);  // 1.00499999… in floating point
  EXPECT_EQ(ms("0.1m"), 6000);
  EXPECT_EQ(ms("2.25d"), 194'400'000);
  EXPECT_EQ(ms("1.4ms"), 1);  // to the nearest millisecond
  EXPECT_EQ(ms("1.5ms"), 2);
  EXPECT_EQ(ms("0.0004s"), 0);
  EXPECT_EQ(ms("0.00048828125d"), 42188);  // exactly 42187.5 ms: rounds up
  EXPECT_EQ(ms("1.0000000000000000000001s"), 1000);
}

TEST(ParseDuration, RefusesWhatIsNotADuration) {
  for (const char* bad : {"", " ", "s", "ms", "h", ".s", "5.s", "5", "15", "1y", "5 s", " 5s", "5s ", "-5s", "+5s", "-0s", "5S",
                          "5sec", "5mss", "1e3s", "0x10s", "infs", "nans", "1.2.3s", "1h30m", "yesterday", "5.5.h"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << "'" << bad << "'";
  EXPECT_FALSE(parse_duration(std::string_view("5\0s", 3)).has_value());
}

TEST(ParseDuration, RefusesOverflow) {
  EXPECT_EQ(ms("9223372036854775807ms"), 9223372036854775807LL);
  EXPECT_FALSE(parse_duration("9223372036854775808ms").has_value());
  EXPECT_FALSE(parse_duration("9223372036854775807s").has_value());
  EXPECT_FALSE(parse_duration("106751991168d").has_value());  // just over INT64_MAX ms
  EXPECT_TRUE(parse_duration("106751991167d").has_value());
  EXPECT_FALSE(parse_duration("99999999999999999999999999999999h").has_value());
  EXPECT_FALSE(parse_duration("9223372036854775807.9ms").has_value());  // the rounding tips it over
}

TEST(FormatDuration, LargestExactUnit) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(milliseconds(250)), "250ms");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(milliseconds(30'000)), "30s");
  EXPECT_EQ(format_duration(milliseconds(90'000)), "90s");
  EXPECT_EQ(format_duration(milliseconds(900'000)), "15m");
  EXPECT_EQ(format_duration(milliseconds(5'400'000)), "90m");
  EXPECT_EQ(format_duration(milliseconds(3'600'000)), "1h");
  EXPECT_EQ(format_duration(milliseconds(7 * 86'400'000LL)), "7d");
  EXPECT_EQ(format_duration(milliseconds(-30'000)), "-30s");
  EXPECT_EQ(format_duration(milliseconds::min()), "-9223372036854775808ms");
}

TEST(FormatDuration, RoundTrips) {
  for (std::int64_t v : {1LL, 999LL, 1000LL, 61'000LL, 3'600'001LL, 86'400'000LL, 9223372036854775807LL}) {
    const auto back = parse_duration(format_duration(milliseconds(v)));
    ASSERT_TRUE(back.has_value()) << v;
    EXPECT_EQ(back->count(), v);
  }
  for (const char* text : {"250ms", "30s", "15m", "1h", "7d"}) EXPECT_EQ(format_duration(*parse_duration(text)), text);
}

TEST(FormatPercent, OneDecimalByDefault) {
  EXPECT_EQ(format_percent(0.953), "95.3 %");
  EXPECT_EQ(format_percent(0.125), "12.5 %");
  EXPECT_EQ(format_percent(0), "0.0 %");
  EXPECT_EQ(format_percent(1), "100.0 %");
  EXPECT_EQ(format_percent(-0.05), "-5.0 %");
  EXPECT_EQ(format_percent(0.9996), "100.0 %");
  EXPECT_EQ(format_percent(1.5), "150.0 %");
}

TEST(FormatPercent, Decimals) {
  EXPECT_EQ(format_percent(0.125, 2), "12.50 %");
  EXPECT_EQ(format_percent(0.125, 0), "12 %");  // printf rounds half to even here
  EXPECT_EQ(format_percent(0.123456, 3), "12.346 %");
  EXPECT_EQ(format_percent(0.5, -1), "50 %");  // negative decimals: none
}

}  // namespace
}  // namespace pipelined::common
