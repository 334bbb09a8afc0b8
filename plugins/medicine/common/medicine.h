// The medicine pipeline's stages (docs/pipelines.md): drug candidates from the SQLite drug database,
// OCR of every uploaded package image in one Gemini call, and a chat call matching the OCR keywords
// to the candidates.
#pragma once

#include "providers.h"
#include "stage_plugin.h"

#include <pipelined/sdk.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pipelined::plugins::medicine {

// ---- stage drugs -----------------------------------------------------------------------------

struct DrugsConfig {
  std::string database = "data/drugs.db";  // relative to the daemon's working directory
  std::size_t limit = 5000;
  static DrugsConfig from(const json& config, std::string_view plugin);
};
// Checks at plugin load that the database opens and has the drugs table.
void check_database(const DrugsConfig& config);
// {"drugs": [{"id", "brand", "generic", "ingredients", "strength", "form", "imprint", "shape", "colour", "manufacturer"}]}
json query_drugs(const DrugsConfig& config);

// ---- stage ocr -------------------------------------------------------------------------------

// Keywords of a package text: words (lowercase, no filler words), strengths ("200 mg") and the
// imprint; unique, in order of appearance.
std::vector<std::string> extract_keywords(std::string_view text);
// Every attachment of the request in one generateContent call. An attachment that is not an image,
// or whose text comes back empty, is listed in "unreadable"; the others are read.
sdk::Task<json> ocr(const sdk::Payload& input, const sdk::Context& ctx, const GeminiOcrConfig& config);

// ---- stage analysis --------------------------------------------------------------------------

struct AnalysisConfig {
  std::string provider = "openai";
  std::string model = "gpt-4o-mini";
  std::size_t max_candidates = 60;
  double min_confidence = 0.0;
  std::int64_t timeout_ms = 0;
  static AnalysisConfig from(const json& config, std::string_view plugin);
};
// Drugs sharing a brand, generic or imprint keyword with an image, best first, at most `limit`.
std::vector<const json*> candidate_drugs(const json& drugs, const json& images, std::size_t limit);
// Input {"drugs": <drugs output>, "ocr": <ocr output>}.
sdk::Task<json> analyze(const json& input, const sdk::Context& ctx, const AnalysisConfig& config);

// ---- the plugins' stage classes (plugins/medicine/*.cpp, stage_plugin.h) -----------------------

using OcrStage = ProviderStage<GeminiOcrConfig, &ocr>;
using AnalysisStage = ProviderStage<AnalysisConfig, &analyze>;
// Checks the database at load (check_database); a run is the query, on the calling thread.
class DrugsStage : public sdk::Stage {
 public:
  DrugsStage(const json& config, std::string_view plugin);
  sdk::Payload run(const sdk::Payload& input, sdk::Context& ctx) override;

 private:
  const DrugsConfig config_;
};

}  // namespace pipelined::plugins::medicine
