// Plugins medicine_ocr_serial and medicine_ocr_parallel: stage "ocr", one source compiled twice
// (MEDICINE_OCR_VARIANT). The code is the same: the serial variant's config says `after: [drugs]`,
// so it waits for the database query, the parallel one overlaps with it.
#include "common/medicine.h"

PIPELINED_STAGE_PLUGIN("medicine_ocr_" MEDICINE_OCR_VARIANT, "ocr", MEDICINE_OCR_VARIANT, pipelined::plugins::medicine::OcrStage)
