// Plugin medicine_analysis: stage "analysis", variant "serial" (one chat call).
#include "common/medicine.h"

PIPELINED_STAGE_PLUGIN("medicine_analysis", "analysis", "serial", pipelined::plugins::medicine::AnalysisStage)
