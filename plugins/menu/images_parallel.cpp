// Plugin menu_images_parallel: stage "images", variant "parallel".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_images_parallel", "images", "parallel", ImagesStage<Schedule::Parallel>)
