// Plugin menu_describe_parallel: stage "describe", variant "parallel".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_describe_parallel", "describe", "parallel", DescribeStage<Schedule::Parallel>)
