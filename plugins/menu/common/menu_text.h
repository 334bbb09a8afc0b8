// Menu text parsing shared by everything that turns OCR lines into a menu: the OCR stage (line
// clean-up), the categorize stage's helpers (menu.h) and provider-sim's emulated categorizer
// (provider-sim/content.cpp). Pure, standard library only, so provider-sim can compile it in
// without the SDK. One code path: a line is an item or a heading here and nowhere else.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipelined::menu_text {

// Puts the price at the end of an OCR line into its canonical form, repairing what OCR does to
// currency marks: "NTS180", "NT S180", "NTS $180", "NT $ 180", "N T$180" -> "NT$180"; "\300",
// "¥ 300", "￥300" -> "¥300"; "300 円" -> "300円"; "$ 5" -> "$5"; "O"/"o" read for a zero inside
// the digits of a marked price -> "0". Lines without a price at their end come back unchanged.
std::string normalize_price(std::string_view line);

// OCR lines of one menu with the price of a line that lost its currency mark ("牛丼 650" where
// "¥" was not read) given the mark the menu's other prices carry, when at least two thirds of
// them carry the same one. Other lines unchanged.
std::vector<std::string> complete_currency(std::vector<std::string> lines);

// OCR lines of one menu with each character that has a Japanese and a Traditional Chinese form
// (麺/麵, 寿/壽, 焼/燒, 鶏/雞, 塩/鹽, ...) in the form of the menu's own script: Japanese on a menu
// with kana (at least a fifth of its lines), Traditional Chinese on a CJK menu without. The
// recogniser mixes both models and reads 麵類 as 麺類 on a Chinese menu (or 寿司 as 壽司).
std::vector<std::string> unify_variants(std::vector<std::string> lines);

// A line that carries a price (any digit, ASCII or fullwidth) is a menu item; others are headings.
bool looks_like_item(std::string_view line);

// "まぐろ ¥300" -> {"まぐろ", "¥300"}; "牛肉麵 NTS180" -> {"牛肉麵", "NT$180"}; no price -> {line, ""}.
// The name never keeps a currency mark (a stray "NT", "NTS", "$", "¥" before the price goes).
std::pair<std::string, std::string> split_price(std::string_view line);

// True when `name` contains a currency token (NT$, NTS before a price, $, ¥, ￥, 円 or 元 next to digits).
bool has_currency_token(std::string_view name);

// "ja" when the text has kana, "zh" for other CJK text, else "en".
std::string script_of(std::string_view text);

struct Item {
  std::size_t line = 0;
  std::string name, price;
};
struct Category {
  std::string name;
  std::vector<Item> items;
};

// Menu lines (in order) -> categories in order of first appearance. A line without a price is a
// heading; the items after it belong to it. Items before any heading go to a category named in
// the menu's own script (Japanese or Traditional Chinese) chosen by keyword (noodles, rice,
// drinks, desserts, else "other"). Lines are given with their line numbers.
std::vector<Category> parse_menu(const std::vector<std::pair<std::size_t, std::string>>& lines);

std::string trim(std::string_view s);  // ASCII blanks and U+3000 at both ends
// Length in bytes of the UTF-8 sequence starting with `lead` (1 for a stray continuation byte).
std::size_t utf8_length(unsigned char lead);

}  // namespace pipelined::menu_text
