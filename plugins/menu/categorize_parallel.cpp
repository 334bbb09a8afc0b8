// Plugin menu_categorize_parallel: stage "categorize", variant "parallel".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_categorize_parallel", "categorize", "parallel", CategorizeStage<Schedule::Parallel>)
