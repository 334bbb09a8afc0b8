// Plugin menu_ocr_tesseract_parallel: stage "ocr", variant "parallel" (local libtesseract).
#include "common/tesseract_reader.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_ocr_tesseract_parallel", "ocr", "parallel", TesseractStage<Schedule::Parallel>)
