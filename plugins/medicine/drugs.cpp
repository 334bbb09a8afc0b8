// Plugin medicine_drugs: stage "drugs", variant "serial" (the SQLite query has nothing to parallelise).
#include "common/medicine.h"

PIPELINED_STAGE_PLUGIN("medicine_drugs", "drugs", "serial", pipelined::plugins::medicine::DrugsStage)
