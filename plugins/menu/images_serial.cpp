// Plugin menu_images_serial: stage "images", variant "serial".
#include "common/menu.h"

using namespace pipelined::plugins::menu;
using pipelined::plugins::Schedule;

PIPELINED_STAGE_PLUGIN("menu_images_serial", "images", "serial", ImagesStage<Schedule::Serial>)
