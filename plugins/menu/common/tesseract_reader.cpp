#include "tesseract_reader.h"

#include "menu.h"

#include <leptonica/allheaders.h>
#include <omp.h>
#include <tesseract/baseapi.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace pipelined::plugins::menu {

using sdk::StageError;

namespace {

struct PixDeleter {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using PixPtr = std::unique_ptr<Pix, PixDeleter>;

std::vector<bool> blank_rows(Pix* gray, int threshold) {
  const int w = static_cast<int>(pixGetWidth(gray)), h = static_cast<int>(pixGetHeight(gray));
  const int wpl = pixGetWpl(gray);
  l_uint32* data = pixGetData(gray);
  std::vector<bool> blank(h, true);
  for (int y = 0; y < h; ++y) {
    l_uint32* line = data + static_cast<std::ptrdiff_t>(y) * wpl;
    for (int x = 0; x < w; ++x)
      if (static_cast<int>(GET_DATA_BYTE(line, x)) < threshold) {
        blank[y] = false;
        break;
      }
  }
  return blank;
}

}  // namespace

int TesseractConfig::cpu_bands() { return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 2, 8); }

TesseractConfig TesseractConfig::from(const json& config, std::string_view plugin) {
  require_known_keys(config, {"languages", "tessdata", "page_segmentation", "blank_threshold", "min_band_height", "max_bands"}, plugin);
  TesseractConfig c;
  c.languages = config_string(config, "languages", c.languages);
  c.tessdata = config_string(config, "tessdata", c.tessdata);
  c.page_segmentation = static_cast<int>(config_number(config, "page_segmentation", c.page_segmentation));
  c.blank_threshold = static_cast<int>(config_number(config, "blank_threshold", c.blank_threshold));
  c.min_band_height = static_cast<int>(config_size(config, "min_band_height", c.min_band_height));
  c.max_bands = static_cast<int>(config_size(config, "max_bands", static_cast<std::size_t>(c.max_bands)));
  if (c.page_segmentation < 0 || c.page_segmentation > 13) throw std::invalid_argument(std::string(plugin) + ": page_segmentation must be 0..13");
  return c;
}

struct TesseractReader::Engine {
  tesseract::TessBaseAPI api;
};

TesseractReader::TesseractReader(TesseractConfig config) : config_(std::move(config)) {
  release(acquire());  // fails now, at plugin load, when the language data is missing
}

TesseractReader::~TesseractReader() = default;

std::unique_ptr<TesseractReader::Engine> TesseractReader::acquire() const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto engine = std::move(idle_.back());
      idle_.pop_back();
      return engine;
    }
  }
  auto engine = std::make_unique<Engine>();
  if (engine->api.Init(config_.tessdata.empty() ? nullptr : config_.tessdata.c_str(), config_.languages.c_str(),
                       tesseract::OEM_LSTM_ONLY) != 0)
    throw std::runtime_error("tesseract: cannot load languages '" + config_.languages + "' from " +
                             (config_.tessdata.empty() ? std::string("the default tessdata directory") : config_.tessdata) +
                             " (Debian: tesseract-ocr-jpn, tesseract-ocr-chi-tra, tesseract-ocr-eng)");
  engine->api.SetPageSegMode(static_cast<tesseract::PageSegMode>(config_.page_segmentation));
  return engine;
}

void TesseractReader::release(std::unique_ptr<Engine> engine) const {
  std::lock_guard<std::mutex> lock(mu_);
  // Concurrent requests may have needed more; keep what one parallel read uses.
  if (idle_.size() < static_cast<std::size_t>(std::max(config_.max_bands, 1))) idle_.push_back(std::move(engine));
}

std::string TesseractReader::recognize(Engine& engine, const void* pix) const {
  // libtesseract parallelises inside one recognition with OpenMP. Here the parallelism is the
  // worker pool's (bands, requests); OpenMP's spinning threads on top of it only oversubscribe the
  // CPUs (measured: a 40-item menu 5x slower). Serialise its parallel regions on this thread (the
  // setting is a per-thread ICV in libgomp, and cheap).
  omp_set_max_active_levels(0);
  engine.api.SetImage(const_cast<Pix*>(static_cast<const Pix*>(pix)));
  engine.api.SetSourceResolution(72);  // rendered menus carry no DPI; say so instead of a warning per call
  std::unique_ptr<char[]> text(engine.api.GetUTF8Text());
  engine.api.Clear();
  if (!text) throw StageError(PL_ERR_INTERNAL, "tesseract: recognition failed");
  return text.get();
}

json TesseractReader::read(const std::string& image, const sdk::Context& ctx, Schedule schedule) const {
  PixPtr decoded(pixReadMem(reinterpret_cast<const l_uint8*>(image.data()), image.size()));
  if (!decoded) throw StageError(PL_ERR_INVALID_INPUT, "ocr: the uploaded file is not an image Leptonica can decode");
  PixPtr gray(pixConvertTo8(decoded.get(), 0));
  decoded.reset();
  if (!gray) throw StageError(PL_ERR_INVALID_INPUT, "ocr: cannot convert the image to grayscale");

  auto read_pix = [&](Pix* pix) {
    auto engine = acquire();
    std::string text;
    try {
      text = recognize(*engine, pix);
    } catch (...) {
      release(std::move(engine));
      throw;
    }
    release(std::move(engine));
    return text;
  };

  std::vector<std::string> texts;
  if (schedule == Schedule::Serial) {
    texts.push_back(read_pix(gray.get()));
  } else {
    const auto bands = split_bands(blank_rows(gray.get(), config_.blank_threshold), config_.min_band_height, config_.max_bands);
    texts.resize(bands.size());
    const l_int32 width = pixGetWidth(gray.get());
    ctx.parallel_for(bands.size(), [&](std::size_t i) {
      ctx.throw_if_cancelled();
      BOX* box = boxCreate(0, bands[i].first, width, bands[i].second - bands[i].first);
      PixPtr band(pixClipRectangle(gray.get(), box, nullptr));
      boxDestroy(&box);
      if (!band) throw StageError(PL_ERR_INTERNAL, "ocr: cannot cut band " + std::to_string(i));
      texts[i] = read_pix(band.get());
    });
  }
  json lines = json::array();
  for (const auto& text : texts)
    for (auto& line : clean_lines(text)) lines.push_back(std::move(line));
  return {{"lines", std::move(lines)}};
}

}  // namespace pipelined::plugins::menu
