#include "tesseract_reader.h"

#include "menu.h"
#include "menu_text.h"

#include <leptonica/allheaders.h>
#include <omp.h>
#include <tesseract/baseapi.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>
#include <thread>

namespace pipelined::plugins::menu {

using sdk::StageError;

namespace {

struct PixDeleter {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using PixPtr = std::unique_ptr<Pix, PixDeleter>;

// Rows of columns [x0, x1) without a pixel darker than `threshold`.
std::vector<bool> blank_rows(Pix* gray, int x0, int x1, int threshold) {
  const int h = static_cast<int>(pixGetHeight(gray));
  const int wpl = pixGetWpl(gray);
  l_uint32* data = pixGetData(gray);
  std::vector<bool> blank(h, true);
  for (int y = 0; y < h; ++y) {
    l_uint32* line = data + static_cast<std::ptrdiff_t>(y) * wpl;
    for (int x = x0; x < x1; ++x)
      if (static_cast<int>(GET_DATA_BYTE(line, x)) < threshold) {
        blank[y] = false;
        break;
      }
  }
  return blank;
}

// Columns [first, last + 1) within [x0, x1) with ink in rows [top, bottom); {x0, x0} when there is none.
std::pair<int, int> ink_columns(Pix* gray, int x0, int x1, int top, int bottom, int threshold) {
  const int wpl = pixGetWpl(gray);
  l_uint32* data = pixGetData(gray);
  int left = x1, right = x0;
  for (int y = top; y < bottom; ++y) {
    l_uint32* line = data + static_cast<std::ptrdiff_t>(y) * wpl;
    for (int x = x0; x < x1; ++x)
      if (static_cast<int>(GET_DATA_BYTE(line, x)) < threshold) {
        left = std::min(left, x);
        right = std::max(right, x + 1);
      }
  }
  return left < right ? std::make_pair(left, right) : std::make_pair(x0, x0);
}

// The page's text columns, left to right, as x ranges that meet in the middle of the gutters
// between them. A gutter is a run of pixel columns with (almost) no ink from top to bottom, at least
// a twentieth of the text's width wide, with at least a sixth of the text's width on either side:
// a right-aligned price column is narrower than that and stays with its names.
std::vector<std::pair<int, int>> text_columns(Pix* gray, int threshold) {
  const int w = static_cast<int>(pixGetWidth(gray)), h = static_cast<int>(pixGetHeight(gray));
  const int wpl = pixGetWpl(gray);
  l_uint32* data = pixGetData(gray);
  std::vector<int> ink(static_cast<std::size_t>(w), 0);
  for (int y = 0; y < h; ++y) {
    l_uint32* line = data + static_cast<std::ptrdiff_t>(y) * wpl;
    for (int x = 0; x < w; ++x) ink[static_cast<std::size_t>(x)] += static_cast<int>(GET_DATA_BYTE(line, x)) < threshold;
  }
  const int allowance = h / 200;  // specks of noise
  int first = 0, last = w;
  while (first < w && ink[static_cast<std::size_t>(first)] <= allowance) ++first;
  while (last > first && ink[static_cast<std::size_t>(last - 1)] <= allowance) --last;
  const int text = last - first;
  std::vector<std::pair<int, int>> columns;
  int start = 0, left_ink = first;
  for (int x = first; x < last;) {
    if (ink[static_cast<std::size_t>(x)] > allowance) {
      ++x;
      continue;
    }
    int end = x;
    while (end < last && ink[static_cast<std::size_t>(end)] <= allowance) ++end;
    if ((end - x) * 20 >= text && (x - left_ink) * 6 >= text && (last - end) * 6 >= text) {
      const int middle = (x + end) / 2;
      columns.emplace_back(start, middle);
      start = middle;
      left_ink = end;
    }
    x = end;
  }
  columns.emplace_back(start, w);
  return columns;
}

// Kana or CJK ideographs in the text (any code point U+3040..U+9FFF).
bool has_cjk(std::string_view text) {
  for (std::size_t i = 0; i + 2 < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xF0) != 0xE0) continue;
    const unsigned cp =
        ((c & 0x0F) << 12) | ((static_cast<unsigned char>(text[i + 1]) & 0x3F) << 6) | (static_cast<unsigned char>(text[i + 2]) & 0x3F);
    if (cp >= 0x3040 && cp <= 0x9FFF) return true;
  }
  return false;
}

// "jpn+chi_tra+eng" -> "jpn+chi_tra": the configured languages without the Latin-script ones
// (empty when nothing would be left or nothing was removed).
std::string cjk_only(const std::string& languages) {
  std::string out;
  bool removed = false;
  std::size_t start = 0;
  while (start <= languages.size()) {
    std::size_t end = languages.find('+', start);
    if (end == std::string::npos) end = languages.size();
    const std::string lang = languages.substr(start, end - start);
    const bool cjk = lang.rfind("jpn", 0) == 0 || lang.rfind("chi_", 0) == 0 || lang.rfind("kor", 0) == 0;
    if (cjk)
      out += (out.empty() ? "" : "+") + lang;
    else
      removed = true;
    start = end + 1;
  }
  return removed ? out : std::string();
}

// Drops tokens made only of marks raw-line recognition puts around a word ("麵類 。。", "_ 麵類").
std::string strip_stray_marks(const std::string& line) {
  static const std::vector<std::string> kMarks = {
      "\xE3\x80\x82" /*。*/, "_", "=", "-", "\xE2\x80\x94" /*—*/, "\"", "\xE2\x80\x9C" /*“*/, "'", "`", ".", ",", "|"};
  auto only_marks = [&](std::string_view token) {
    while (!token.empty()) {
      bool hit = false;
      for (const auto& m : kMarks)
        if (token.substr(0, m.size()) == m) {
          token.remove_prefix(m.size());
          hit = true;
          break;
        }
      if (!hit) return false;
    }
    return true;
  };
  std::string out;
  std::size_t start = 0;
  while (start < line.size()) {
    std::size_t end = line.find(' ', start);
    if (end == std::string::npos) end = line.size();
    const std::string token = line.substr(start, end - start);
    if (!token.empty() && !only_marks(token)) out += (out.empty() ? "" : " ") + token;
    start = end + 1;
  }
  return out;
}

}  // namespace

int TesseractConfig::cpu_bands() { return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 2, 8); }

TesseractConfig TesseractConfig::from(const json& config, std::string_view plugin) {
  require_known_keys(config,
                     {"languages", "tessdata", "page_segmentation", "blank_threshold", "min_band_height", "max_bands", "preload_engines",
                      "max_engines", "reread_below_confidence"},
                     plugin);
  TesseractConfig c;
  c.languages = config_string(config, "languages", c.languages);
  c.tessdata = config_string(config, "tessdata", c.tessdata);
  c.page_segmentation = static_cast<int>(config_number(config, "page_segmentation", c.page_segmentation));
  c.blank_threshold = static_cast<int>(config_number(config, "blank_threshold", c.blank_threshold));
  c.min_band_height = static_cast<int>(config_size(config, "min_band_height", c.min_band_height));
  c.max_bands = static_cast<int>(config_size(config, "max_bands", static_cast<std::size_t>(c.max_bands)));
  if (config.contains("preload_engines")) c.preload_engines = static_cast<int>(config_size(config, "preload_engines", 1));
  c.max_engines = static_cast<int>(config_size(config, "max_engines", static_cast<std::size_t>(c.max_engines)));
  c.reread_below_confidence = static_cast<int>(config_number(config, "reread_below_confidence", c.reread_below_confidence));
  if (c.page_segmentation < 0 || c.page_segmentation > 13)
    throw std::invalid_argument(std::string(plugin) + ": page_segmentation must be 0..13");
  return c;
}

struct TesseractReader::Engine {
  tesseract::TessBaseAPI api;
  bool cjk_only = false;
};

TesseractReader::TesseractReader(TesseractConfig config) : config_(std::move(config)), cjk_languages_(cjk_only(config_.languages)) {
  config_.max_engines = std::max({config_.max_engines, config_.preload_engines, 1});
  // One after another on this thread (about 0.3 s each): the host charges what create() keeps to
  // the plugin instance by the creating thread, which threads of our own would escape. The first
  // fails now, at plugin load, when the language data is missing.
  std::vector<std::unique_ptr<Engine>> made;
  for (int i = 0; i < std::max(config_.preload_engines, 1); ++i) {
    try {
      made.push_back(make_engine(false));
    } catch (const std::exception&) {
      if (i == 0) throw;
      break;  // the first engine loaded the same languages: this is out of memory; requests make engines as needed
    }
  }
  engines_[0] = static_cast<int>(made.size());
  for (auto& e : made) release(std::move(e));
}

TesseractReader::~TesseractReader() = default;

std::unique_ptr<TesseractReader::Engine> TesseractReader::acquire(bool cjk, const sdk::Context* ctx) const {
  std::unique_lock<std::mutex> lock(mu_);
  auto& idle = idle_[cjk ? 1 : 0];
  int& engines = engines_[cjk ? 1 : 0];
  for (;;) {
    if (!idle.empty()) {
      auto engine = std::move(idle.back());
      idle.pop_back();
      return engine;
    }
    if (engines < config_.max_engines) {
      ++engines;
      lock.unlock();
      try {
        return make_engine_for_all_requests(cjk);
      } catch (...) {
        lock.lock();
        --engines;
        released_.notify_one();
        throw;
      }
    }
    if (ctx != nullptr) ctx->throw_if_cancelled();
    // A slice, not an untimed wait: cancellation is polled, not signalled.
    released_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

std::unique_ptr<TesseractReader::Engine> TesseractReader::make_engine(bool cjk) const {
  auto engine = std::make_unique<Engine>();
  engine->cjk_only = cjk;
  const std::string& languages = cjk ? cjk_languages_ : config_.languages;
  if (engine->api.Init(config_.tessdata.empty() ? nullptr : config_.tessdata.c_str(), languages.c_str(), tesseract::OEM_LSTM_ONLY) != 0)
    throw std::runtime_error("tesseract: cannot load languages '" + languages + "' from " +
                             (config_.tessdata.empty() ? std::string("the default tessdata directory") : config_.tessdata) +
                             " (Debian: tesseract-ocr-jpn, tesseract-ocr-chi-tra, tesseract-ocr-eng)");
  engine->api.SetPageSegMode(static_cast<tesseract::PageSegMode>(config_.page_segmentation));
  return engine;
}

// An engine made during a request serves every later request: it is made on a thread of its own,
// which carries no request's memory account, so the host does not charge its 90 MB to the request
// that happened to need it first (the rollout's memory guardrail compares per-request peaks).
std::unique_ptr<TesseractReader::Engine> TesseractReader::make_engine_for_all_requests(bool cjk) const {
  std::unique_ptr<Engine> engine;
  std::exception_ptr error;
  std::thread([&] {
    try {
      engine = make_engine(cjk);
    } catch (...) {
      error = std::current_exception();
    }
  }).join();
  if (error) std::rethrow_exception(error);
  return engine;
}

void TesseractReader::release(std::unique_ptr<Engine> engine) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle_[engine->cjk_only ? 1 : 0].push_back(std::move(engine));  // kept: at most max_engines exist
  }
  released_.notify_one();
}

TesseractReader::Reading TesseractReader::recognize(Engine& engine, const void* pix, int psm) const {
  // libtesseract parallelises inside one recognition with OpenMP. Here the parallelism is the
  // worker pool's (bands, requests); OpenMP's spinning threads on top of it only oversubscribe the
  // CPUs (measured: a 40-item menu 5x slower). Serialise its parallel regions on this thread (the
  // setting is a per-thread ICV in libgomp, and cheap).
  omp_set_max_active_levels(0);
  engine.api.SetPageSegMode(static_cast<tesseract::PageSegMode>(psm < 0 ? config_.page_segmentation : psm));
  engine.api.SetImage(const_cast<Pix*>(static_cast<const Pix*>(pix)));
  engine.api.SetSourceResolution(72);  // rendered menus carry no DPI; say so instead of a warning per call
  std::unique_ptr<char[]> text(engine.api.GetUTF8Text());
  const int confidence = engine.api.MeanTextConf();
  engine.api.Clear();
  if (!text) throw StageError(PL_ERR_INTERNAL, "tesseract: recognition failed");
  return {text.get(), confidence};
}

json TesseractReader::read(const std::string& image, const sdk::Context& ctx, Schedule schedule) const {
  PixPtr decoded(pixReadMem(reinterpret_cast<const l_uint8*>(image.data()), image.size()));
  if (!decoded) throw StageError(PL_ERR_INVALID_INPUT, "the uploaded file is not an image Leptonica can decode");
  PixPtr gray(pixConvertTo8(decoded.get(), 0));
  decoded.reset();
  if (!gray) throw StageError(PL_ERR_INVALID_INPUT, "cannot convert the image to grayscale");

  // Serial and parallel read the same thing: each text line cut out of the image on its own (with
  // the same margins), recognised as one line by the same steps. They differ only in scheduling, so
  // they cannot disagree on a line, a heading or a price (reading whole pages or bands let
  // Tesseract's layout analysis group lines differently and drop a heading in one variant only).
  // Lines in reading order: column by column, top to bottom in each.
  struct LineBox {
    int top, bottom;     // the line's ink rows
    int column, x0, x1;  // its column
    int above, below;    // white to the neighbouring lines (or the page's edge)
  };
  std::vector<LineBox> boxes;
  const int width = static_cast<int>(pixGetWidth(gray.get())), height = static_cast<int>(pixGetHeight(gray.get()));
  const auto columns = text_columns(gray.get(), config_.blank_threshold);
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const auto [x0, x1] = columns[c];
    const std::vector<std::pair<int, int>> spans = split_lines(blank_rows(gray.get(), x0, x1, config_.blank_threshold));
    for (std::size_t i = 0; i < spans.size(); ++i)
      boxes.push_back({spans[i].first, spans[i].second, static_cast<int>(c), x0, x1,
                       i == 0 ? spans[i].first : (spans[i].first - spans[i - 1].second) / 2,
                       i + 1 == spans.size() ? height - spans[i].second : (spans[i + 1].first - spans[i].second) / 2});
  }
  auto cut = [&](std::size_t i) {
    const LineBox& b = boxes[i];
    // Margins: up to kMargin pixels of white, never reaching into the neighbouring lines.
    constexpr int kMargin = 12;
    const int top = b.top - std::min(kMargin, b.above), bottom = b.bottom + std::min(kMargin, b.below);
    const auto [left, right] = ink_columns(gray.get(), b.x0, b.x1, b.top, b.bottom, config_.blank_threshold);
    // Sideways a line's height of white (within its column): with less, short lines (two-character
    // headings) read empty.
    const int side = std::max(kMargin, b.bottom - b.top);
    const int x0 = std::max(b.x0, left - side), x1 = std::min({width, b.x1, right + side});
    BOX* box = boxCreate(x0, top, std::max(1, x1 - x0), bottom - top);
    PixPtr line(pixClipRectangle(gray.get(), box, nullptr));
    boxDestroy(&box);
    if (!line) throw StageError(PL_ERR_INTERNAL, "cannot cut line " + std::to_string(i));
    return line;
  };
  // One line of text, cleaned; Tesseract may still break it.
  auto clean = [](std::string text) {
    std::replace(text.begin(), text.end(), '\n', ' ');
    const auto cleaned = clean_lines(text);
    return cleaned.empty() ? std::string() : cleaned.front();
  };
  auto read_one = [&](Engine& engine, Pix* pix, int psm) { return clean(recognize(engine, pix, psm).text); };
  // A line the recogniser is unsure of is read again a quarter smaller, and the reading it is
  // surer of is kept. The LSTM's misreads depend on the glyphs' size in pixels
  // (焼き鳥 as 焼き島, えび as えびひび at one size, right at another), and its confidence is low
  // where it is wrong (measured over the fixtures: docs/benchmarks.md, "Menu reading accuracy").
  // Reading at 1.25 as well was no better over the fixtures and costs more than the smaller size.
  auto read_line = [&](Engine& engine, Pix* pix) {
    Reading first = recognize(engine, pix, -1);
    if (first.confidence >= config_.reread_below_confidence) return clean(first.text);
    PixPtr smaller(pixScaleGrayLI(pix, 0.75f, 0.75f));
    if (!smaller) return clean(first.text);
    Reading second = recognize(engine, smaller.get(), -1);
    return clean(second.confidence > first.confidence ? second.text : first.text);
  };
  // Runs fn(engine, line) over `todo` with engines of the given languages: serial on this thread,
  // parallel in contiguous groups (about one per min_band_height rows, at most max_bands) on the pool.
  auto run = [&](const std::vector<std::size_t>& todo, bool cjk_only, const std::function<void(Engine&, std::size_t)>& fn) {
    auto group = [&](std::size_t from, std::size_t to) {
      auto engine = acquire(cjk_only, &ctx);
      try {
        for (std::size_t k = from; k < to; ++k) {
          ctx.throw_if_cancelled();
          fn(*engine, todo[k]);
        }
      } catch (...) {
        release(std::move(engine));
        throw;
      }
      release(std::move(engine));
    };
    if (schedule == Schedule::Serial || todo.size() < 2) {
      group(0, todo.size());
      return;
    }
    const std::size_t groups = std::min<std::size_t>(
        todo.size(),
        static_cast<std::size_t>(std::clamp(height / std::max(config_.min_band_height, 1), 1, std::max(config_.max_bands, 1))));
    ctx.parallel_for(groups, [&](std::size_t g) { group(todo.size() * g / groups, todo.size() * (g + 1) / groups); });
  };

  std::vector<std::string> texts(boxes.size());
  std::vector<std::size_t> all(boxes.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  run(all, false, [&](Engine& engine, std::size_t i) {
    PixPtr line = cut(i);
    texts[i] = read_line(engine, line.get());
    // Ink but no text: short bold headings (two characters: 飲料, 麵類) can come back empty from
    // line recognition; read as a raw line (no layout analysis) they are found, with stray marks
    // around them (dropped), else enlarged.
    if (texts[i].empty()) texts[i] = strip_stray_marks(read_one(engine, line.get(), tesseract::PSM_RAW_LINE));
    if (texts[i].empty()) {
      PixPtr larger(pixScale(line.get(), 2.0f, 2.0f));
      if (larger) texts[i] = read_one(engine, larger.get(), -1);
    }
  });

  // On a CJK menu a short name can be read as Latin letters ("牛丼" as "+ Ft", "肉圓" as "AE]"):
  // with the English model the recogniser may take Latin for a line it is unsure of. Such lines are
  // read again without the Latin-script languages, and that reading is kept when it has CJK text.
  if (!cjk_languages_.empty()) {
    std::size_t cjk_lines = 0;
    for (const auto& t : texts) cjk_lines += has_cjk(t);
    if (cjk_lines * 2 > texts.size()) {
      std::vector<std::size_t> latin;
      for (std::size_t i = 0; i < texts.size(); ++i)
        if (!texts[i].empty() && !has_cjk(split_price(texts[i]).first)) latin.push_back(i);
      run(latin, true, [&](Engine& engine, std::size_t i) {
        PixPtr line = cut(i);
        std::string again = read_line(engine, line.get());
        if (has_cjk(split_price(again).first)) texts[i] = std::move(again);
      });
    }
  }

  // A "column" of prices alone is the prices of the column on its left, apart by a gap as wide as a
  // gutter (short names on a short menu): each joins the line beside it, the one its rows overlap most.
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    if (boxes[i].column == 0 || texts[i].empty() || !menu_text::looks_like_item(texts[i]) ||
        !menu_text::split_price(texts[i]).second.empty())
      continue;
    std::size_t beside = boxes.size();
    int most = 0;
    for (std::size_t j = 0; j < boxes.size(); ++j) {
      const int overlap = std::min(boxes[i].bottom, boxes[j].bottom) - std::max(boxes[i].top, boxes[j].top);
      if (boxes[j].column + 1 == boxes[i].column && !texts[j].empty() && overlap > most) beside = j, most = overlap;
    }
    if (beside == boxes.size()) continue;
    texts[beside] += " " + texts[i];
    texts[i].clear();
  }

  std::vector<std::string> read;
  for (auto& text : texts)
    if (!text.empty()) read.push_back(std::move(text));
  json lines = json::array();
  for (auto& line : menu_text::unify_variants(menu_text::complete_currency(std::move(read)))) lines.push_back(std::move(line));
  return {{"lines", std::move(lines)}};
}

}  // namespace pipelined::plugins::menu
