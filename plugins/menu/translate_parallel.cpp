// Plugin menu_translate_parallel: stage "translate", variant "parallel".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_translate_parallel", "translate", "parallel", TranslateStage<Schedule::Parallel>)
