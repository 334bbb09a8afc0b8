// Local OCR of menu images with libtesseract (jpn+chi_tra+eng by default). Serial reads the whole
// image at once; parallel cuts a tall image into horizontal bands at blank pixel rows and reads the
// bands at the same time on the daemon's worker pool (ctx.parallel_for), then joins their lines in
// band order. Tesseract engines are expensive to initialise (about 0.3 s and 90 MB each for three
// languages), so the reader keeps up to max_bands initialised engines for reuse; each is used by one
// thread at a time. More bands than CPUs gain nothing and cost an engine each.
#pragma once

#include "menu.h"
#include "providers.h"

#include <pipelined/sdk.hpp>

#include <memory>
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
  std::string tessdata;           // empty: the library's default
  int page_segmentation = 4;      // PSM_SINGLE_COLUMN: menus are one column of lines of varied size
  int blank_threshold = 200;      // a row whose pixels are all at least this light (0-255) is blank
  int min_band_height = 240;      // parallel: no band shorter than this (pixels), images shorter are read whole
  int max_bands = cpu_bands();    // parallel: at most this many bands (default: the CPU count, 2..8)
  static TesseractConfig from(const json& config, std::string_view plugin);
  static int cpu_bands();
};

class TesseractReader {
 public:
  // Initialises one engine to check that the languages' data is installed; throws with the reason.
  explicit TesseractReader(TesseractConfig config);
  ~TesseractReader();

  // {"lines": [...]} of the image (PNG, JPEG, ...: whatever Leptonica decodes).
  json read(const std::string& image, const sdk::Context& ctx, Schedule schedule) const;

 private:
  struct Engine;
  std::unique_ptr<Engine> acquire() const;
  void release(std::unique_ptr<Engine> engine) const;
  std::string recognize(Engine& engine, const void* pix) const;

  TesseractConfig config_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<Engine>> idle_;
};

// The local OCR stage of plugins menu_ocr_tesseract_* (stage_plugin.h): the request's image, read
// whole (Schedule::Serial) or in bands (Schedule::Parallel).
template <Schedule S>
class TesseractStage : public sdk::Stage {
 public:
  TesseractStage(const json& config, std::string_view plugin) : reader_(TesseractConfig::from(config, plugin)) {}
  sdk::Payload run(const sdk::Payload& input, sdk::Context& ctx) override {
    return {reader_.read(*request_image(input).data, ctx, S), {}};
  }

 private:
  const TesseractReader reader_;
};

}  // namespace pipelined::plugins::menu
