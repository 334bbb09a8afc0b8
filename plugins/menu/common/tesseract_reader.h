// Local OCR of menu images with libtesseract (jpn+chi_tra+eng by default). Both variants divide the
// page into text columns at gutters, cut each column into text lines at blank pixel rows
// (split_lines) and recognise each line on its own as a single line of text, so they read exactly
// the same lines; serial reads them one after another, parallel groups them into horizontal bands
// (split_bands) read at the same time on the daemon's worker pool (ctx.parallel_for) and joins their
// lines in order. Tesseract engines are expensive to initialise (about 0.3 s and 90 MB each for
// three languages), so the reader keeps up to max_bands initialised engines for reuse; each is used
// by one thread at a time. More bands than CPUs gain nothing and cost an engine each.
#pragma once

#include "menu.h"
#include "providers.h"

#include <pipelined/sdk.hpp>

#include <memory>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tesseract {
class TessBaseAPI;
}

namespace pipelined::plugins::menu {

struct TesseractConfig {
  std::string languages = "jpn+chi_tra+eng";
  std::string tessdata;         // empty: the library's default
  int page_segmentation = 7;    // PSM_SINGLE_LINE: each cut-out text line is read as one line
  int blank_threshold = 200;    // a row whose pixels are all at least this light (0-255) is blank
  int min_band_height = 240;    // parallel: about one group of lines per this many pixel rows (images shorter: one)
  int max_bands = cpu_bands();  // parallel: at most this many groups of lines at once (default: the CPU count, 2..8)
  // Engines initialised when the plugin instance is created (default: as many as one request of the
  // variant uses, 1 serial, max_bands parallel), so their memory is the instance's, not the first
  // requests' (the rollout's memory guardrail compares per-request peaks).
  int preload_engines = -1;
  // At most this many engines per language set, shared by all requests; a line group waits for a
  // free one. More engines than CPUs read no faster (recognition is CPU-bound) and each holds about
  // 90 MB: unbounded, eight concurrent menus made and freed engines per request, and the daemon's RSS
  // grew burst after burst. Default: the CPU count (2..8); never fewer than preload_engines.
  int max_engines = cpu_bands();
  // A line read with a lower mean confidence (0..100) is read again at 0.75 times its size and the
  // surer reading kept; 0 never, 101 always. Costs about 70 % more OCR CPU on the fixtures.
  int reread_below_confidence = 90;
  static TesseractConfig from(const json& config, std::string_view plugin);
  static int cpu_bands();
};

class TesseractReader {
 public:
  // Initialises config.preload_engines engines (at least one, which checks that the languages' data
  // is installed; throws with the reason) and keeps them for reuse.
  explicit TesseractReader(TesseractConfig config);
  ~TesseractReader();

  // {"lines": [...]} of the image (PNG, JPEG, ...: whatever Leptonica decodes).
  json read(const std::string& image, const sdk::Context& ctx, Schedule schedule) const;

 private:
  struct Engine;
  // An idle engine, else a new one while fewer than max_engines exist, else waits for one (until
  // the request is cancelled). cjk_only: the CJK languages alone. `ctx` null: at load, no waiting.
  std::unique_ptr<Engine> acquire(bool cjk_only, const sdk::Context* ctx) const;
  std::unique_ptr<Engine> make_engine(bool cjk_only) const;
  std::unique_ptr<Engine> make_engine_for_all_requests(bool cjk_only) const;
  void release(std::unique_ptr<Engine> engine) const;
  struct Reading {
    std::string text;
    int confidence = 0;  // Tesseract's mean word confidence, 0..100
  };
  Reading recognize(Engine& engine, const void* pix, int psm) const;  // psm < 0: the configured one

  TesseractConfig config_;
  std::string cjk_languages_;  // config_.languages without the Latin-script ones; empty: no second reading
  mutable std::mutex mu_;
  mutable std::condition_variable released_;
  mutable std::vector<std::unique_ptr<Engine>> idle_[2];  // full languages, CJK only
  mutable int engines_[2] = {0, 0};                       // made and not destroyed, idle or in use
};

// The local OCR stage of plugins menu_ocr_tesseract_* (stage_plugin.h): the request's image, read
// whole (Schedule::Serial) or in bands (Schedule::Parallel).
template <Schedule S>
class TesseractStage : public sdk::Stage {
 public:
  TesseractStage(const json& config, std::string_view plugin) : reader_(with_default_preload(TesseractConfig::from(config, plugin))) {}
  sdk::Payload run(const sdk::Payload& input, sdk::Context& ctx) override { return {reader_.read(*request_image(input).data, ctx, S), {}}; }

 private:
  static TesseractConfig with_default_preload(TesseractConfig c) {
    if (c.preload_engines < 0) c.preload_engines = S == Schedule::Parallel ? c.max_bands : 1;
    return c;
  }
  const TesseractReader reader_;
};

}  // namespace pipelined::plugins::menu
