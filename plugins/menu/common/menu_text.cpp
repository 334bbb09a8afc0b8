#include "menu_text.h"

#include <cctype>
#include <map>

namespace pipelined::menu_text {

namespace {

constexpr std::string_view kYen = "\xC2\xA5";             // ¥
constexpr std::string_view kFullYen = "\xEF\xBF\xA5";      // ￥
constexpr std::string_view kEn = "\xE5\x86\x86";           // 円
constexpr std::string_view kYuan = "\xE5\x85\x83";         // 元
constexpr std::string_view kIdeoSpace = "\xE3\x80\x80";    // U+3000

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' || c == '\n'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}


// Fullwidth digits (U+FF10..U+FF19) to ASCII, "\" before a digit (Tesseract's Japanese model for
// "¥") and "￥" to "¥", the ideographic space to a blank.
std::string canonical_chars(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0xEF && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBC && static_cast<unsigned char>(s[i + 2]) >= 0x90 &&
        static_cast<unsigned char>(s[i + 2]) <= 0x99) {
      out += static_cast<char>('0' + (static_cast<unsigned char>(s[i + 2]) - 0x90));
      i += 3;
    } else if (s.substr(i, 3) == kFullYen) {
      out += kYen;
      i += 3;
    } else if (s.substr(i, 3) == kIdeoSpace) {
      out += ' ';
      i += 3;
    } else if (c == '\\' && i + 1 < s.size() && is_digit(s[i + 1])) {
      out += kYen;
      i += 1;
    } else {
      out += static_cast<char>(c);
      ++i;
    }
  }
  return out;
}

// The price at the end of a canonical line, found right to left.
struct Price {
  std::size_t begin = 0;   // where the price (with its currency mark) starts in the line
  std::string text;        // canonical: currency + digits + suffix
};

std::size_t skip_spaces_left(std::string_view s, std::size_t p) {
  while (p > 0 && is_space(static_cast<unsigned char>(s[p - 1]))) --p;
  return p;
}

bool find_price(std::string_view s, Price* out) {
  std::size_t end = s.size();
  // Stray marks OCR adds after the last digit.
  while (end > 0 && (s[end - 1] == '|' || s[end - 1] == '_' || s[end - 1] == '~' || s[end - 1] == '\'' || s[end - 1] == '"' ||
                     s[end - 1] == '`' || is_space(static_cast<unsigned char>(s[end - 1]))))
    --end;
  std::string suffix;
  for (std::string_view sfx : {kEn, kYuan})
    if (ends_with(s.substr(0, end), sfx)) {
      suffix = std::string(sfx);
      end = skip_spaces_left(s, end - sfx.size());
      break;
    }
  // Digits, separators and O/o read for a zero; the run starts and ends with a real digit.
  std::size_t p = end;
  while (p > 0 && (is_digit(s[p - 1]) || s[p - 1] == ',' || s[p - 1] == '.' || s[p - 1] == 'O' || s[p - 1] == 'o')) --p;
  while (p < end && !is_digit(s[p])) ++p;
  while (end > p && !is_digit(s[end - 1])) --end;  // "300." -> "300"
  if (p == end) return false;
  std::string digits(s.substr(p, end - p));
  for (char& c : digits)
    if (c == 'O' || c == 'o') c = '0';

  // The currency mark before the digits, with the blanks OCR puts inside it.
  std::string currency;
  std::size_t q = skip_spaces_left(s, p);
  auto at = [&](std::size_t i, char c) { return i > 0 && s[i - 1] == c; };
  if (ends_with(s.substr(0, q), kYen)) {
    currency = std::string(kYen);
    q -= kYen.size();
  } else {
    std::size_t r = q;
    const bool dollar = at(r, '$');
    if (dollar) r = skip_spaces_left(s, r - 1);
    // "NTS" / "NT S": the S is a misread "$", only after NT (S alone before digits is no currency).
    if (at(r, 'S') || at(r, 's')) {
      const std::size_t u = skip_spaces_left(s, r - 1);
      if (at(u, 'T')) r = u;
    }
    bool nt = false;
    if (at(r, 'T')) {
      const std::size_t n = skip_spaces_left(s, r - 1);
      if (at(n, 'N') && (n == 1 || !std::isalpha(static_cast<unsigned char>(s[n - 2])))) {
        nt = true;
        q = n - 1;
      }
    }
    if (nt) {
      currency = "NT$";
    } else if (dollar) {
      // "$", "US$", "HK$" as printed.
      const std::size_t d = q - 1;
      std::size_t w = d;
      while (w > 0 && s[w - 1] >= 'A' && s[w - 1] <= 'Z' && d - w < 2) --w;
      if (d - w == 2 && (w == 0 || !std::isalpha(static_cast<unsigned char>(s[w - 1])))) {
        currency = std::string(s.substr(w, d - w)) + "$";
        q = w;
      } else {
        currency = "$";
        q = d;
      }
    }
  }
  out->begin = currency.empty() ? p : q;
  out->text = currency + digits + suffix;
  return true;
}

// A currency remnant at the end of a name ("Beef Noodle Soup NTS", "牛肉麵 NT", "まぐろ ¥").
std::string strip_currency_tail(std::string name) {
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view tail : {std::string_view("NT$"), std::string_view("NTS"), std::string_view("NT"), std::string_view("$"),
                                  kYen}) {
      if (!ends_with(name, tail)) continue;
      const std::string_view before = std::string_view(name).substr(0, name.size() - tail.size());
      // Only as a token of its own, or right after non-ASCII text ("牛肉麵NTS").
      const bool separate = before.empty() || is_space(static_cast<unsigned char>(before.back())) ||
                            static_cast<unsigned char>(before.back()) >= 0x80 || tail == "$" || tail == kYen;
      if (!separate) continue;
      name = trim(before);
      changed = true;
    }
  }
  return name;
}

}  // namespace

std::size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

std::string trim(std::string_view s) {
  for (;;) {
    if (!s.empty() && is_space(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    else if (s.substr(0, 3) == kIdeoSpace) s.remove_prefix(3);
    else break;
  }
  for (;;) {
    if (!s.empty() && is_space(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    else if (ends_with(s, kIdeoSpace)) s.remove_suffix(3);
    else break;
  }
  return std::string(s);
}

bool looks_like_item(std::string_view line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (is_digit(line[i])) return true;
    if (i + 2 < line.size() && static_cast<unsigned char>(line[i]) == 0xEF && static_cast<unsigned char>(line[i + 1]) == 0xBC &&
        static_cast<unsigned char>(line[i + 2]) >= 0x90 && static_cast<unsigned char>(line[i + 2]) <= 0x99)
      return true;
  }
  return false;
}

std::string normalize_price(std::string_view line) {
  const std::string s = canonical_chars(trim(line));
  Price price;
  if (!find_price(s, &price)) return trim(line);
  const std::string name = strip_currency_tail(trim(std::string_view(s).substr(0, price.begin)));
  if (name.empty()) return price.text;
  const bool spaced = price.begin > 0 && is_space(static_cast<unsigned char>(s[price.begin - 1]));
  return name + (spaced || static_cast<unsigned char>(name.back()) < 0x80 ? " " : "") + price.text;
}

std::vector<std::string> complete_currency(std::vector<std::string> lines) {
  // The mark of each priced line: the price text without its digits and separators.
  std::map<std::string, std::size_t> marks;
  std::size_t priced = 0;
  auto mark_of = [](const std::string& price) {
    std::string m;
    for (char c : price)
      if (!is_digit(c) && c != ',' && c != '.') m += c;
    return m;
  };
  for (const auto& l : lines) {
    auto [name, price] = split_price(l);
    if (price.empty()) continue;
    ++priced;
    ++marks[mark_of(price)];
  }
  std::string dominant;
  for (const auto& [m, n] : marks)
    if (!m.empty() && n * 3 >= priced * 2) dominant = m;
  if (dominant.empty()) return lines;
  const bool suffix = dominant == kEn || dominant == kYuan;
  for (auto& l : lines) {
    auto [name, price] = split_price(l);
    if (price.empty() || !mark_of(price).empty()) continue;
    l = name + " " + (suffix ? price + dominant : dominant + price);
  }
  return lines;
}

std::vector<std::string> unify_variants(std::vector<std::string> lines) {
  // Japanese (shinjitai) form, Traditional Chinese form.
  static const std::vector<std::pair<std::string, std::string>> kVariants = {
      {"麺", "麵"}, {"寿", "壽"}, {"焼", "燒"}, {"鶏", "雞"}, {"塩", "鹽"}, {"鉄", "鐵"}, {"楽", "樂"}, {"猪", "豬"},
      {"黒", "黑"}, {"団", "團"}, {"売", "賣"}, {"蔵", "藏"}, {"辺", "邊"}, {"亀", "龜"}, {"醤", "醬"},
      {"広", "廣"}, {"浜", "濱"}};
  std::size_t kana = 0, cjk = 0;
  for (const auto& l : lines) {
    const std::string s = script_of(l);
    kana += s == "ja";
    cjk += s != "en";
  }
  if (cjk == 0) return lines;
  const bool japanese = kana * 5 >= lines.size();
  for (auto& l : lines)
    for (const auto& [ja, zh] : kVariants) {
      const std::string& from = japanese ? zh : ja;
      const std::string& to = japanese ? ja : zh;
      if (from == to) continue;
      for (std::size_t at = l.find(from); at != std::string::npos; at = l.find(from, at + to.size())) l.replace(at, from.size(), to);
    }
  return lines;
}

std::pair<std::string, std::string> split_price(std::string_view raw) {
  const std::string s = canonical_chars(trim(raw));
  Price price;
  if (!find_price(s, &price)) return {trim(raw), ""};
  std::string name = strip_currency_tail(trim(std::string_view(s).substr(0, price.begin)));
  if (name.empty()) return {trim(raw), ""};
  return {name, price.text};
}

bool has_currency_token(std::string_view name) {
  const std::string s = canonical_chars(name);
  if (s.find('$') != std::string::npos || s.find(kYen) != std::string::npos) return true;
  for (std::string_view sfx : {kEn, kYuan})
    for (std::size_t at = s.find(sfx); at != std::string::npos; at = s.find(sfx, at + 1)) {
      std::size_t p = skip_spaces_left(s, at);
      if (p > 0 && is_digit(s[p - 1])) return true;
    }
  // "NT" / "NTS" as a token of its own or glued to CJK text.
  for (std::size_t at = s.find("NT"); at != std::string::npos; at = s.find("NT", at + 1)) {
    const bool left = at == 0 || is_space(static_cast<unsigned char>(s[at - 1])) || static_cast<unsigned char>(s[at - 1]) >= 0x80;
    std::size_t e = at + 2;
    if (e < s.size() && (s[e] == 'S' || s[e] == 's')) ++e;
    const bool right = e == s.size() || is_space(static_cast<unsigned char>(s[e])) || is_digit(s[e]) ||
                       static_cast<unsigned char>(s[e]) >= 0x80;
    if (left && right) return true;
  }
  return false;
}

std::string script_of(std::string_view text) {
  bool cjk = false;
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = utf8_length(c);
    if (n == 3 && i + 2 < text.size()) {
      const unsigned cp = ((c & 0x0F) << 12) | ((text[i + 1] & 0x3F) << 6) | (text[i + 2] & 0x3F);
      if (cp >= 0x3040 && cp <= 0x30FF) return "ja";  // hiragana, katakana
      if (cp >= 0x4E00 && cp <= 0x9FFF) cjk = true;
    }
    i += n;
  }
  return cjk ? "zh" : "en";
}

std::vector<Category> parse_menu(const std::vector<std::pair<std::size_t, std::string>>& lines) {
  // Fallback categories by keyword, in the menu's script.
  struct Fallback {
    std::vector<std::string> words;
    std::string ja, zh;
  };
  static const std::vector<Fallback> kFallbacks = {
      {{"ラーメン", "うどん", "そば", "麺", "麵"}, "麺類", "麵類"},
      {{"丼", "飯"}, "ご飯もの", "飯類"},
      {{"茶", "ビール", "酒", "奶", "漿", "ジュース", "コーヒー", "咖啡"}, "飲み物", "飲料"},
      {{"冰", "アイス", "餅", "団子", "糕"}, "デザート", "甜點"}};
  std::string all;
  for (const auto& [n, text] : lines) all += text;
  const bool japanese = script_of(all) == "ja";

  std::vector<Category> categories;
  std::map<std::string, std::size_t> index;
  std::string current;
  for (const auto& [number, raw] : lines) {
    const std::string text = trim(raw);
    if (text.empty()) continue;
    if (!looks_like_item(text)) {
      current = text;  // a heading
      continue;
    }
    auto [name, price] = split_price(text);
    if (price.empty() || name.empty()) continue;  // digits without a name: nothing to list
    std::string category = current;
    if (category.empty()) {
      category = japanese ? "その他" : "其他";
      for (const auto& f : kFallbacks) {
        bool hit = false;
        for (const auto& w : f.words) hit = hit || name.find(w) != std::string::npos;
        if (hit) {
          category = japanese ? f.ja : f.zh;
          break;
        }
      }
    }
    auto [it, added] = index.emplace(category, categories.size());
    if (added) categories.push_back({category, {}});
    categories[it->second].items.push_back({number, std::move(name), std::move(price)});
  }
  return categories;
}

}  // namespace pipelined::menu_text
