// Plugin menu_ocr_gemini_serial: stage "ocr", variant "serial".
#include "common/menu.h"

using namespace pipelined::plugins::menu;

PIPELINED_STAGE_PLUGIN("menu_ocr_gemini_serial", "ocr", "serial", GeminiOcrStage)
