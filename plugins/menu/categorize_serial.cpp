// Plugin menu_categorize_serial: stage "categorize", variant "serial".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_categorize_serial", "categorize", "serial", CategorizeStage<Schedule::Serial>)
