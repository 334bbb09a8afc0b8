// Plugin menu_translate_serial: stage "translate", variant "serial".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_translate_serial", "translate", "serial", TranslateStage<Schedule::Serial>)
