// Plugin menu_ocr_tesseract_serial: stage "ocr", variant "serial" (local libtesseract).
#include "common/tesseract_reader.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_ocr_tesseract_serial", "ocr", "serial", TesseractStage<Schedule::Serial>)
