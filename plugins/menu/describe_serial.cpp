// Plugin menu_describe_serial: stage "describe", variant "serial".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_describe_serial", "describe", "serial", DescribeStage<Schedule::Serial>)
