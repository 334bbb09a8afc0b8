// The menu pipeline's stages (docs/pipelines.md): everything but scheduling is shared by the serial
// and parallel variants, which call these functions with Schedule::Serial or Schedule::Parallel.
#pragma once

#include "providers.h"
#include "stage_plugin.h"

#include <pipelined/sdk.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipelined::plugins::menu {

// ---- provider protocols of the menu stages only (menu_providers.cpp) ----------------------------

// OpenAI image generation.
sdk::HttpRequest image_request(const std::string& provider, const std::string& model, const std::string& prompt,
                               const std::string& size);
std::string image_result(const sdk::HttpResponse& response);  // data[0].url (or a data: URL from b64_json)

// Google Cloud Translation v2.
sdk::HttpRequest translate_request(const std::string& provider, const std::vector<std::string>& texts,
                                   const std::string& target);
std::vector<std::string> translate_result(const sdk::HttpResponse& response, std::size_t expected);

// ---- text helpers (pure) ---------------------------------------------------------------------

// Splits OCR text into lines: trimmed, runs of blanks collapsed, empty lines dropped, and the price
// at the end of a line put into its canonical form (menu_text::normalize_price: "\300" -> "¥300",
// "NTS180" -> "NT$180").
std::vector<std::string> clean_lines(std::string_view text);
// A line that carries a price (any digit) is a menu item; others are headers.
bool looks_like_item(std::string_view line);
// "まぐろ ¥300" -> {"まぐろ", "¥300"}; no price -> {line, ""} (menu_text::split_price: OCR's
// currency confusions repaired, no currency mark left in the name).
std::pair<std::string, std::string> split_price(std::string_view line);

// ---- stage 1: OCR -----------------------------------------------------------------------------

// Text lines [begin, end) of an image, from which rows are blank: runs of inked rows, a short run
// (under half the median run's height: one stroke of 二, an accent) joined to its neighbour when
// the gap is under 0.6 line heights and the two together are no taller than 1.3 line heights. Local OCR reads each line on its own, serial and parallel alike.
std::vector<std::pair<int, int>> split_lines(const std::vector<bool>& blank_rows);

// ---- stage 1: OCR with Gemini (production variant) -------------------------------------------

// {"lines": [...]} of the request's first image attachment.
sdk::Task<json> ocr_gemini(const sdk::Payload& input, const sdk::Context& ctx, const GeminiOcrConfig& config);
// The request's image: its first attachment; StageError("invalid_input") when there is none.
const sdk::Attachment& request_image(const sdk::Payload& input);

// ---- stage 2: categorize ---------------------------------------------------------------------

struct CategorizeConfig {
  std::string provider = "openai";
  std::string model = "gpt-4o-mini";
  std::size_t max_in_flight = 8;    // parallel: chunks = about this many
  std::size_t min_chunk_lines = 8;  // parallel: no chunk smaller than this (headers aside)
  std::int64_t timeout_ms = 0;
  static CategorizeConfig from(const json& config, std::string_view plugin);
};
// Contiguous chunks of line indices of about `target` lines, cut before a header where possible;
// a chunk cut inside a long section starts with that section's header line again (context only:
// headers are not items, so nothing is doubled).
std::vector<std::vector<std::size_t>> chunk_lines(const std::vector<std::string>& lines, std::size_t target);
// Merges the answers of the chunks (each {"categories": [...]}) into one categorization: items keyed
// by line, first occurrence wins, lines outside `lines` dropped, item lines no answer returned put
// back next to their neighbours; categories ordered by first item line, items by line.
// `warnings` receives one message per repaired defect.
json merge_categories(const std::vector<std::string>& lines, const std::vector<json>& answers,
                      std::vector<std::string>* warnings = nullptr);
sdk::Task<json> categorize(const json& input, const sdk::Context& ctx, const CategorizeConfig& config, Schedule schedule);

// ---- stage 3: translate ----------------------------------------------------------------------

struct TranslateConfig {
  std::string provider = "google_translate";  // empty: chat only
  std::string fallback_provider = "openai";   // empty: no fallback
  std::string fallback_model = "gpt-4o-mini";
  std::string target = "en";
  std::int64_t timeout_ms = 0;
  static TranslateConfig from(const json& config, std::string_view plugin);
};
// Serial: one category after another; Parallel: all categories at once. Google Translate first;
// the categories whose call failed are translated through the chat API.
sdk::Task<json> translate(const json& input, const sdk::Context& ctx, const TranslateConfig& config, Schedule schedule);

// ---- stage 4: describe -----------------------------------------------------------------------

struct DescribeConfig {
  std::string provider = "openai";
  std::string model = "gpt-4o-mini";
  std::string language = "en";
  std::size_t chunk_size = 10;     // serial chunk size
  std::size_t max_in_flight = 8;   // parallel: chunk size = ceil(items / max_in_flight)
  std::int64_t timeout_ms = 0;
  static DescribeConfig from(const json& config, std::string_view plugin);
};
std::size_t describe_chunk_size(std::size_t items, const DescribeConfig& config, Schedule schedule);
// Emits one item per menu item as soon as its chunk's answer arrives; returns the translate output
// with a description on every item.
sdk::Task<json> describe(const json& input, const sdk::Context& ctx, const DescribeConfig& config, Schedule schedule);

// ---- stage 5: images (input: stream) ---------------------------------------------------------

struct ImagesConfig {
  std::string provider = "openai";
  std::string model = "dall-e-3";
  std::string size = "1024x1024";
  std::int64_t timeout_ms = 0;
  static ImagesConfig from(const json& config, std::string_view plugin);
};
// Serial: reads every item, then generates the images one by one; Parallel: starts each item's
// image as it arrives. Final {"categories": [...]} in the order of stage 2.
sdk::Task<json> images(const sdk::Context& ctx, const ImagesConfig& config, Schedule schedule);
// Groups emitted items by category_index / item_index into the final categories.
json assemble_categories(const std::vector<json>& items);

// ---- the plugins' stage classes (plugins/menu/*.cpp, stage_plugin.h) ---------------------------

template <Schedule S> using CategorizeStage = ProviderStage<CategorizeConfig, &categorize, S>;
template <Schedule S> using TranslateStage = ProviderStage<TranslateConfig, &translate, S>;
template <Schedule S> using DescribeStage = ProviderStage<DescribeConfig, &describe, S>;
template <Schedule S> using ImagesStage = ProviderStage<ImagesConfig, &images, S>;
using GeminiOcrStage = ProviderStage<GeminiOcrConfig, &ocr_gemini>;

}  // namespace pipelined::plugins::menu
